//! A seeded generator and the mutations applied to seed images.

/// xorshift64*: deterministic, so every failure names the seed that
/// reproduces it.
#[derive(Debug, Clone)]
pub struct Rng(u64);

/// Values that break size and address arithmetic.
const INTERESTING: [u64; 14] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0xfff,
    0x1000,
    0x10_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    0xffff_ffff_ffff_f000,
    u64::MAX,
];

impl Rng {
    /// A generator for `seed` (0 is remapped: xorshift needs a set bit).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// The next 64 random bits.
    pub fn bits(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.bits() % n.max(1)
    }

    /// True with probability 1/`n`.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    /// A value likely to hit an edge: interesting constants, near-limits,
    /// or plain random bits.
    pub fn edgy(&mut self) -> u64 {
        match self.below(4) {
            0 => INTERESTING[self.below(INTERESTING.len() as u64) as usize],
            1 => INTERESTING[self.below(INTERESTING.len() as u64) as usize]
                .wrapping_add(self.below(9))
                .wrapping_sub(4),
            2 => self.below(0x1_0000),
            _ => self.bits(),
        }
    }

    /// Mutates `data` in place a few times: bit flips, interesting values
    /// in 1/2/4/8-byte fields, byte runs, truncation, extension. Biased to
    /// the first 4 KiB, where headers are.
    pub fn mutate(&mut self, data: &mut Vec<u8>) {
        for _ in 0..1 + self.below(4) {
            if data.is_empty() {
                data.push(self.bits() as u8);
            }
            let len = data.len() as u64;
            let at = if self.one_in(3) {
                self.below(len)
            } else {
                self.below(len.min(4096))
            } as usize;
            match self.below(6) {
                0 => data[at] ^= 1 << self.below(8),
                1 | 2 => {
                    let width = 1usize << self.below(4);
                    let v = self.edgy().to_le_bytes();
                    let end = (at + width).min(data.len());
                    data[at..end].copy_from_slice(&v[..end - at]);
                }
                3 => {
                    let n = (self.below(64) as usize).min(data.len() - at);
                    let b = self.bits() as u8;
                    data[at..at + n].fill(b);
                }
                4 => data.truncate(at.max(1)),
                _ => data.extend((0..self.below(256)).map(|_| self.bits() as u8)),
            }
        }
    }
}

/// Mutations of a large image without copying it: overwrites are logged
/// and undone, truncation is a shorter view.
#[derive(Debug, Default)]
pub struct InPlace {
    undo: Vec<(usize, u8)>,
}

impl InPlace {
    /// Mutates `data` in place (biased to the first 4 KiB and to the ELF
    /// program headers' area) and returns the length of the view to use.
    pub fn mutate(&mut self, rng: &mut Rng, data: &mut [u8]) -> usize {
        let mut len = data.len();
        if len == 0 {
            return 0;
        }
        for _ in 0..1 + rng.below(4) {
            let at = match rng.below(4) {
                0 => rng.below(len as u64),
                1 => rng.below(len.min(512) as u64),
                _ => rng.below(len.min(4096) as u64),
            } as usize;
            match rng.below(5) {
                0 => self.set(data, at, data[at] ^ (1 << rng.below(8))),
                1 | 2 => {
                    let width = 1usize << rng.below(4);
                    let v = rng.edgy().to_le_bytes();
                    for (k, b) in v.iter().take(width).enumerate() {
                        if at + k < len {
                            self.set(data, at + k, *b);
                        }
                    }
                }
                3 => {
                    let b = rng.bits() as u8;
                    for k in at..(at + rng.below(64) as usize).min(len) {
                        self.set(data, k, b);
                    }
                }
                _ => len = at.max(1),
            }
        }
        len
    }

    fn set(&mut self, data: &mut [u8], at: usize, value: u8) {
        self.undo.push((at, data[at]));
        data[at] = value;
    }

    /// Puts every byte back.
    pub fn restore(&mut self, data: &mut [u8]) {
        for (at, old) in self.undo.drain(..).rev() {
            data[at] = old;
        }
    }
}
