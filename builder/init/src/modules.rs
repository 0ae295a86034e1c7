//! The kernel modules kiln-init loads, and the file that lists them.
//!
//! `/etc/kiln/modules` in the initramfs lists the modules to load, in order
//! (kiln's `kmod` module writes it in dependency order, dependencies first):
//!
//! ```text
//! # comment lines and blank lines are ignored
//! kernel/drivers/virtio/virtio_ring.ko
//! kernel/drivers/md/dm-verity.ko
//! /lib/modules/extra/foo.ko  opt=1 other=2
//! ```
//!
//! One module per line: a path, absolute or relative to
//! `/lib/modules/<running kernel release>/`, then optionally, after white
//! space, the module's parameters exactly as `finit_module(2)` takes them.
//! Module files must be uncompressed `.ko` (the initramfs is compressed as a
//! whole). A missing list file means no modules (everything built in).

/// Where the list lives in the initramfs.
pub const LIST: &str = "/etc/kiln/modules";
/// The directory relative module paths are resolved against, plus the
/// kernel release.
pub const MODULE_ROOT: &str = "/lib/modules";

/// One line of the module list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// Absolute path of the `.ko` file.
    pub path: String,
    /// Module parameters, possibly empty.
    pub params: String,
}

/// A line of the list that kiln-init cannot use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub why: &'static str,
}

impl std::fmt::Display for ListError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{LIST} line {}: {}", self.line, self.why)
    }
}

/// Parse the module list for kernel release `kver`.
pub fn parse_list(text: &str, kver: &str) -> Result<Vec<Module>, ListError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (path, params) = line
            .split_once(|c: char| c.is_ascii_whitespace())
            .map_or((line, ""), |(p, rest)| (p, rest.trim()));
        let err = |why| ListError { line: i + 1, why };
        if path.split('/').any(|c| c == "..") || path.contains('\0') || params.contains('\0') {
            return Err(err("module path must not contain `..` or NUL"));
        }
        if !path.ends_with(".ko") {
            return Err(err("module must be an uncompressed .ko file"));
        }
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("{MODULE_ROOT}/{kver}/{path}")
        };
        out.push(Module {
            path,
            params: params.to_string(),
        });
    }
    Ok(out)
}

/// What to do about a failed `finit_module`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadOutcome {
    /// It is loaded now.
    Loaded,
    /// `EEXIST`: it was already loaded (or is built in under that name).
    AlreadyThere,
    /// `ENODEV`: the module found no hardware to drive; harmless for the
    /// boot unless the root disk needed it, which the partition wait reports.
    NoDevice,
    /// Anything else: the image is broken.
    Failed(nix::errno::Errno),
}

/// Classify the result of `finit_module`.
pub fn classify(result: nix::Result<()>) -> LoadOutcome {
    use nix::errno::Errno;
    match result {
        Ok(()) => LoadOutcome::Loaded,
        Err(Errno::EEXIST) => LoadOutcome::AlreadyThere,
        Err(Errno::ENODEV) => LoadOutcome::NoDevice,
        Err(e) => LoadOutcome::Failed(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::errno::Errno;

    #[test]
    fn parse_table() {
        let text = "# deps first\n\n  kernel/drivers/virtio/virtio_ring.ko\n/abs/x.ko  a=1 b=\"c d\"\nkernel/md/dm-mod.ko\t\n";
        let m = parse_list(text, "6.1.0-42-cloud-amd64").unwrap();
        assert_eq!(
            m,
            vec![
                Module {
                    path: "/lib/modules/6.1.0-42-cloud-amd64/kernel/drivers/virtio/virtio_ring.ko"
                        .into(),
                    params: "".into()
                },
                Module {
                    path: "/abs/x.ko".into(),
                    params: "a=1 b=\"c d\"".into()
                },
                Module {
                    path: "/lib/modules/6.1.0-42-cloud-amd64/kernel/md/dm-mod.ko".into(),
                    params: "".into()
                },
            ]
        );
        for (text, line, why) in [
            (
                "a.ko\n../b.ko\n",
                2,
                "module path must not contain `..` or NUL",
            ),
            ("x.ko.xz\n", 1, "module must be an uncompressed .ko file"),
        ] {
            assert_eq!(parse_list(text, "k"), Err(ListError { line, why }));
        }
        assert_eq!(parse_list("", "k"), Ok(vec![]));
    }

    #[test]
    fn outcomes() {
        assert_eq!(classify(Ok(())), LoadOutcome::Loaded);
        assert_eq!(classify(Err(Errno::EEXIST)), LoadOutcome::AlreadyThere);
        assert_eq!(classify(Err(Errno::ENODEV)), LoadOutcome::NoDevice);
        assert_eq!(
            classify(Err(Errno::ENOEXEC)),
            LoadOutcome::Failed(Errno::ENOEXEC)
        );
    }
}
