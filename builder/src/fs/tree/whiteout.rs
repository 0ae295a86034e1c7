//! OCI whiteout names (<https://github.com/opencontainers/image-spec/blob/main/layer.md#whiteouts>):
//! which entry names are whiteouts, what they hide, and which are malformed
//! or misplaced.

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

/// A whiteout-named entry where a layer may hold it: well formed
/// ([`whiteout()`]), not a directory (it only names what it hides), and no
/// opaque marker at the top of the layer (`at_top`), where it would hide
/// every layer below, the base's kernel and init with them. The rule for a
/// layer's `[files]` and for every layer kiln stores, whatever made it.
pub fn check_whiteout_entry(name: &str, at_top: bool, is_dir: bool) -> Result<(), String> {
    let Some(w) = whiteout(name).map_err(|e| e.to_string())? else {
        return Ok(());
    };
    if is_dir {
        return Err(format!(
            "{name:?} is a whiteout name: it must be an empty file naming what it hides, not a directory"
        ));
    }
    if w == Whiteout::Opaque && at_top {
        return Err(format!(
            "{name:?} at the top of a layer would hide every layer below (the base's kernel and init with them); it belongs in the directory whose lower contents it hides"
        ));
    }
    Ok(())
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
