"""A Milvus wire contract for tests, hand-built from the protos and the Go tool: NOT a Milvus.

No Milvus newer than 2.3.5 runs on this machine, so the adapters for 2.4, 2.5, 2.6 and 3.x
are tested against this: an in-process gRPC server on pymilvus' generated code for the real
3.0 protos (``pymilvus.grpc_gen``), plus the HTTP endpoints the Go tool calls beside gRPC. A
:class:`~milvus_contract.profiles.Profile` per release says what that release answers
(version, unimplemented RPCs, GC control, REST segment describe, FlushAll); the state
(:class:`~milvus_contract.state.State`) is what tests seed; every request is logged with its
metadata, and chosen calls can be made to fail.

For ``restore secondary`` it also plays a Milvus 2.6 CDC secondary (``replicate.py``): the
replicate stream, whose every message it decodes and applies to the State, and the checkpoint
RPCs. That too is a fake of the 2.6 wire contract, written from Milvus's message encoding
(pkg/streaming/util/message, pkg/proto/messages.proto) and the Go tool's core/restore/secondary;
no 2.6 runs here to compare it with.

What it proves: the requests an adapter sends, in which order, with which headers, and how
the adapter reacts to the answers a line gives. What it cannot prove: that a real server of
the line answers this way. Its answers were read from the protos and from the Go tool
(zilliztech/milvus-backup f81df44), never observed on a real 2.4+ server.
"""

from .profiles import PROFILES, Profile
from .server import Call, ContractServer, Fault
from .state import L0, L1, State, schema_field

__all__ = ["L0", "L1", "PROFILES", "Call", "ContractServer", "Fault", "Profile", "State", "schema_field"]
