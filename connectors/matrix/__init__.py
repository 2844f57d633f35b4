"""Matrix as an application service: a homeserver's transactions in, social events out."""
