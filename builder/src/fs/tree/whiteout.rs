//! OCI whiteout names (<https://github.com/opencontainers/image-spec/blob/main/layer.md#whiteouts>):
//! which entry names are whiteouts, what they hide, and which are malformed.

use super::{TreeError, OPAQUE_MARKER, WHITEOUT_PREFIX};

/// Prefix the OCI specification reserves for special whiteout entries, of
/// which only [`OPAQUE_MARKER`] is defined.
const RESERVED_PREFIX: &str = ".wh..wh.";

/// What a whiteout-named entry means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whiteout<'a> {
    /// `.wh.NAME`: `NAME` is removed from the layers below.
    Hides(&'a str),
    /// `.wh..wh..opq`: the directory's lower contents are removed.
    Opaque,
}

/// Classify an entry's file name: `Ok(None)` for an ordinary name, the
/// whiteout it is, or [`TreeError::BadWhiteout`] for a name with the
/// whiteout prefix that hides nothing a directory can hold (`.wh.` alone,
/// `.wh..`, `.wh...`) or that uses the reserved `.wh..wh.` prefix for
/// anything but the opaque marker.
pub fn whiteout(name: &str) -> Result<Option<Whiteout<'_>>, TreeError> {
    let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) else {
        return Ok(None);
    };
    let bad = |why: &str| {
        Err(TreeError::BadWhiteout {
            name: name.to_string(),
            why: why.to_string(),
        })
    };
    if name == OPAQUE_MARKER {
        return Ok(Some(Whiteout::Opaque));
    }
    if name.starts_with(RESERVED_PREFIX) {
        return bad("the .wh..wh. prefix is reserved; the only such entry is .wh..wh..opq");
    }
    match hidden {
        "" => bad("it names nothing to hide"),
        "." | ".." => bad("it would hide a directory's own entry, not a file in it"),
        _ => Ok(Some(Whiteout::Hides(hidden))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whiteout_names() {
        for (name, want) in [
            ("motd", Ok(None)),
            (".wh.motd", Ok(Some(Whiteout::Hides("motd")))),
            (".wh..hidden", Ok(Some(Whiteout::Hides(".hidden")))),
            (".wh..wh..opq", Ok(Some(Whiteout::Opaque))),
            (".wh.", Err("names nothing")),
            (".wh..", Err("own entry")),
            (".wh...", Err("own entry")),
            (".wh..wh.", Err("reserved")),
            (".wh..wh..opq2", Err("reserved")),
            (".wh..wh.motd", Err("reserved")),
        ] {
            match (whiteout(name), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{name}"),
                (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{name}: {e}"),
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
    }
}
