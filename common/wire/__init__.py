"""The wire between roles: frames and codec, message types, handshake and proofs, liveness, the client link."""
