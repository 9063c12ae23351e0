"""Over the air: a burst OFDM PHY for real radios (issue 6).

* :mod:`gensemcom.ota.phy` -- numerology, frame layout, header, channel estimation and
  pilot tracking in numpy (no GNU Radio);
* :mod:`gensemcom.blocks` -- the GNU Radio blocks ``ota_tx`` / ``ota_rx`` (hier
  blocks built from GNU Radio's OFDM blocks) and their Python helpers;
* :mod:`gensemcom.flowgraphs.ota_sim` -- :func:`run_ota_sim`: frames through tx, GNU Radio's
  ``channels.channel_model`` and rx in a real top block.

See docs/ota.md.
"""
from .phy import Header, OfdmReceiverCore, OtaError, OtaParams  # noqa: F401

__all__ = ["Header", "OfdmReceiverCore", "OtaError", "OtaParams"]
