"""Electronic shelf label systems: drivers that push label content and report what labels show.

What goes where:

- ``protocol``: the OpenEPaperLink access point's wire format (research/esl.md), pure: label
  addresses, tag database records, websocket frames, upload answers and the content hash the
  access point reports. Garbage decodes to ``None``, never an exception.
- one driver module per ESL system, each publishing its own ``PLUGIN`` (the next is the
  OpenEPaperLink access point over HTTP and its websocket). A driver reports ``CONFIRMED`` only
  on the label's own confirmation ("xfer complete"), never on the access point's HTTP 200.

The pure module imports nothing but the standard library. The gateway core never imports
``devices``; the simulated access point is :mod:`devices.simulated.esl`.
"""
