//! Buffers whose size comes from the user or a file, asked for fallibly: a request that cannot
//! be met is an [`Error::OutOfMemory`] (Python's `MemoryError`) naming what it was for, never
//! an abort of the process.

use crate::error::{Error, Result};

/// `n` copies of `value`, or an error naming `what` and the bytes asked for.
pub fn filled<T: Clone>(n: usize, value: T, what: &str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| {
        Error::OutOfMemory(format!("cannot allocate {} bytes for {what}", n.saturating_mul(std::mem::size_of::<T>())))
    })?;
    v.resize(n, value);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_impossible_request_is_an_error_naming_it() {
        assert_eq!(filled(3, 1.5f32, "x").unwrap(), [1.5; 3]);
        let e = filled(usize::MAX / 4, 0f32, "the optimizer's slots").unwrap_err();
        assert!(matches!(e, Error::OutOfMemory(m) if m.contains("the optimizer's slots")));
    }
}
