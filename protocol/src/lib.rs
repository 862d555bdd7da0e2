//! Sans-IO wire codec for the Millrace channel protocol (see docs/protocol.md).
