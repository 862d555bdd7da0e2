//! How the stream-decoder targets cut their input into reads.

/// Read sizes (1 to 64 bytes) covering `total` bytes, from a tiny linear congruential
/// generator: deterministic per input.
pub fn read_sizes(seed: u8, total: usize) -> Vec<usize> {
    let mut state = u32::from(seed) | 1;
    let mut sizes = Vec::new();
    let mut covered = 0;
    while covered < total {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let size = 1 + (state >> 16) as usize % 64;
        sizes.push(size.min(total - covered));
        covered += size;
    }
    sizes
}
