//! A small deterministic mutator, libFuzzer's basic moves without its coverage feedback: the
//! test command uses it to run every target on a few thousand variants of its seeds, so a
//! change that breaks a target's property is caught before anyone runs scripts/fuzz.sh.

use kiln_ir::gen::Rng;

/// Tokens worth inserting: the language's punctuation and keywords, numbers at the edges of
/// their types, and the JSON and manifest fragments the loaders parse.
const TOKENS: &[&[u8]] = &[
    b"(",
    b")",
    b"[",
    b"]",
    b"{",
    b"}",
    b",",
    b";",
    b":",
    b"=",
    b"->",
    b"@",
    b"**",
    b"-1",
    b"0",
    b"1.e5",
    b"9223372036854775807",
    b"4294967296",
    b"1e400",
    b"nan",
    b"fn",
    b"let",
    b"export",
    b"as",
    b"grad(",
    b"wrt=[",
    b"f32",
    b"f64",
    b"i32",
    b"bool",
    b"[::-1]",
    b"sum(",
    b"reshape(",
    b"\"",
    b"null",
    b"true",
    b"\"bytes\": ",
    b"\"shape\": [",
    b"\"sha256\": \"",
    b"../",
    b"/dev/zero",
    b"\xef\xbb\xbf",
    b"\xff",
];

/// Draws variants of the inputs it is given.
pub struct Mutator {
    rng: Rng,
}

impl Mutator {
    pub fn new(seed: u64) -> Mutator {
        Mutator { rng: Rng::new(seed) }
    }

    /// `input` changed by one to four moves; `other` is a second input to splice from.
    pub fn mutate(&mut self, input: &[u8], other: &[u8]) -> Vec<u8> {
        let mut out = input.to_vec();
        for _ in 0..1 + self.rng.below(4) {
            self.one_move(&mut out, other);
        }
        out
    }

    fn one_move(&mut self, out: &mut Vec<u8>, other: &[u8]) {
        let at = self.rng.below(out.len() + 1);
        let span = 1 + self.rng.below(16);
        let end = (at + span).min(out.len());
        match self.rng.below(7) {
            0 if at < out.len() => out[at] ^= 1 << self.rng.below(8),
            1 if at < out.len() => out[at] = self.rng.pick(&[0, 0xff, b'0', b'9', b'-', b' ', b'\n', 0x7f]),
            2 => {
                out.drain(at..end);
            }
            3 => {
                let copy = out[at..end].to_vec();
                let to = self.rng.below(out.len() + 1);
                out.splice(to..to, copy);
            }
            4 if !other.is_empty() => {
                let from = self.rng.below(other.len());
                let piece = &other[from..(from + span * 4).min(other.len())];
                out.splice(at..end, piece.iter().copied());
            }
            5 => {
                let token = self.rng.pick(TOKENS);
                out.splice(at..at, token.iter().copied());
            }
            _ => out.insert(at.min(out.len()), self.rng.below(256) as u8),
        }
    }
}
