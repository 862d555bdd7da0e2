//! Tests that run the encoder and the decoders together. They live apart from both, so
//! that neither module's source imports the other (nor `message`, whose layouts both
//! implement): the codec's modules form no import loop, tests included.

mod encoder_output;
mod message_layouts;
