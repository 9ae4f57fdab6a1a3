"""Shared by the data tests.

``NO_GCE_CHECK=true`` before anything imports google-auth (it reads the variable once, at import):
without it, looking for Google credentials that are not there ends with a probe of the Compute
Engine metadata server, an address outside this machine. The worker processes of the session
cluster start later and inherit it.
"""

import os

os.environ["NO_GCE_CHECK"] = "true"
# gcsfs (read at import) otherwise asks a bucket's layout over gRPC, which the GCS emulator lacks.
os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"
