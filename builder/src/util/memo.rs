//! Memoising pure, expensive steps: [`Memo`] keeps the output of a function
//! of some bytes so a later build with the same bytes skips the work. The
//! store implements it (`STORE/memo/`); [`NoMemo`] always does the work.
//! Image assembly takes a `&dyn Memo`, so it needs no store to run.
//!
//! The input need not be what the function reads, only something that
//! determines it: the initramfs is memoised by a description of everything
//! it is made from (content digests), not by those bytes themselves.

use anyhow::Result;

/// Somewhere to keep outputs of pure functions of bytes.
pub trait Memo: Sync {
    /// The output of `f`, a pure function of `input` named `kind` (kinds
    /// must not share inputs): computed the first time, kept after that.
    /// When `f` fails, nothing is kept and its error is returned.
    fn memo(&self, kind: &str, input: &[u8], f: &dyn Fn() -> Result<Vec<u8>>) -> Result<Vec<u8>>;
}

/// Keeps nothing: every call runs its function.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMemo;

impl Memo for NoMemo {
    fn memo(&self, _kind: &str, _input: &[u8], f: &dyn Fn() -> Result<Vec<u8>>) -> Result<Vec<u8>> {
        f()
    }
}
