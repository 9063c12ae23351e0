"""The top blocks our commands build, from the blocks in :mod:`gensemcom.blocks`:

* :mod:`.semantic_link` -- ``gensemcom link``: images through a system and the PDU PHY
  (:class:`SemanticLinkFlowgraph`, :func:`run_flowgraph`), and ``--phy ota-sim``;
* :mod:`.phy_loopback` -- the PHY loopback of ``gensemcom demo`` and ``eval --flowgraph``
  (:class:`PhyLoopback`, :class:`FlowgraphLink`);
* :mod:`.ota_sim` -- frames through ``ota_tx``, GNU Radio's ``channel_model`` and
  ``ota_rx`` (:class:`OtaSim`, :func:`run_ota_sim`).
"""
