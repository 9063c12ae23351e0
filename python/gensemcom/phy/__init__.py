"""The PHY core: pure numpy, no GNU Radio import.

* :mod:`.channels`: SNR convention (Es/N0, unit power), AWGN, Rayleigh block fading,
  equalisation, pilots (LS / LMMSE);
* :mod:`.qam`: Gray M-QAM with exact and max-log LLRs, closed-form BER;
* :mod:`.ldpc`: LDPC codes behind one interface (own vectorised decoder, pyldpc, gr-fec);
* :mod:`.framing`: CRC-32 and code-block framing;
* :mod:`.digital`: the digital path (framing + LDPC + QAM);
* :mod:`.analog`: real vectors <-> power-normalised complex symbols;
* :mod:`.burst`: guard + preamble burst format for sample streams.
"""
