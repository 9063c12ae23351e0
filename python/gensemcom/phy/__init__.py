"""The PHY core: pure numpy, no GNU Radio import.

* :mod:`.channels`: SNR convention (Es/N0, unit power), AWGN, Rayleigh block fading,
  equalisation, pilots (LS / LMMSE);
* :mod:`.qam`: Gray M-QAM with exact and max-log LLRs, closed-form BER;
* :mod:`.ldpc`: LDPC codes behind one interface (own vectorised decoder, pyldpc, gr-fec);
* :mod:`.framing`: CRC-32 and code-block framing;
* :mod:`.header`: the protected header block (QPSK, 5G NR LDPC rate 1/5, CRC-16) and
  the data-aided SNR estimate;
* :mod:`.mcs`: modulation and coding schemes, the measured BLER table, link adaptation;
* :mod:`.digital`: the digital path (framing + LDPC + QAM; header + payload per frame);
* :mod:`.analog`: real vectors <-> power-normalised complex symbols;
* :mod:`.burst`: guard + preamble burst format for sample streams.
"""
