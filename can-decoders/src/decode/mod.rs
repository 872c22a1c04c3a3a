//! Decoding frames into signals (placeholder until the decoder lands).
