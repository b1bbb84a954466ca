"""Adobe Campaign Classic's SOAP interface, the parts Message Center clients use.

- :mod:`.xml`: hardened XML parsing (no DTD, no entities, bounded depth and size),
- :mod:`.ctx`: the one mapping between an event's XML ``<ctx>`` and the JSON ``ctx`` templates see,
- :mod:`.envelope`: reading a SOAP call, writing answers and faults as Adobe does,
- :mod:`.events`: ``<rtEvent>`` / ``<batchEvent>`` elements to :class:`tidings.ingest.Submission`,
- :mod:`.session`: ``xtk:session#Logon`` tokens (stateless, signed),
- :mod:`.wsdl`: the WSDL documents ``schemawsdl.jsp`` serves.

The HTTP routes are in :mod:`tidings.api.soap`; nothing here touches the network or the
database.
"""
