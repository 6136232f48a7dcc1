"""SL 651-2014 (水文监测数据通信规约) hydrological telemetry: HEX/BCD frames over TCP from stations and DTUs.

`frame` (layout, CRC16, stream splitting, building), `elements` (identifiers to metrics, values in
bulk), `message` (multi-packet reassembly), `decode` (many messages to one batch), `server` (asyncio
TCP server feeding the ingest pipeline), `codec` (the ``sl651`` codec for one-payload transports).
"""
