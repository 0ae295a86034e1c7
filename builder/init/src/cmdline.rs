//! The kernel command line contract of kiln-init.
//!
//! | parameter | meaning |
//! | --- | --- |
//! | `roothash=<64 hex>` | required: the dm-verity root hash (sha256) of the root filesystem, as systemd-veritysetup-generator reads it. Its first 128 bits are the root data partition's GPT unique GUID, its last 128 bits the verity hash partition's (UAPI Discoverable Partitions Specification). |
//! | `kiln.root_fstype=<name>` | filesystem of the root, default `ext4` |
//! | `kiln.init=<absolute path>` | the image's init, default `/sbin/init` |
//! | `kiln.timeout=<seconds>` | how long to wait for the partitions, default 30 |
//!
//! Words are split as the kernel does (`next_arg` in `lib/cmdline.c`): on
//! spaces, except inside double quotes, which are removed. A repeated
//! parameter takes its last value, as with kernel parameters.

/// Default path of the image's init.
pub const DEFAULT_INIT: &str = "/sbin/init";
/// Default root filesystem type.
pub const DEFAULT_FSTYPE: &str = "ext4";
/// Default partition wait, seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;

/// What kiln-init takes from the kernel command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The dm-verity root hash.
    pub roothash: [u8; 32],
    /// Root filesystem type for mount(2).
    pub fstype: String,
    /// Absolute path of the image's init inside the root.
    pub init: String,
    /// Seconds to wait for the partitions to appear.
    pub timeout_secs: u64,
}

/// A command line kiln-init cannot boot from.
#[derive(Debug, PartialEq, Eq)]
pub enum CmdlineError {
    /// No `roothash=`: without it there is nothing verified to boot.
    MissingRoothash,
    /// A parameter with a value kiln-init does not accept.
    BadValue {
        /// The parameter.
        key: &'static str,
        /// Its value.
        value: String,
        /// What it must look like.
        why: &'static str,
    },
}

impl std::fmt::Display for CmdlineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CmdlineError::MissingRoothash => {
                write!(
                    f,
                    "no roothash= on the kernel command line; refusing to boot an unverified root"
                )
            }
            CmdlineError::BadValue { key, value, why } => {
                write!(f, "kernel command line {key}={value:?}: {why}")
            }
        }
    }
}

/// Split a command line into words the way the kernel does.
pub fn split(cmdline: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_quote = false;
    let mut any = false;
    for c in cmdline.chars() {
        match c {
            '"' => {
                in_quote = !in_quote;
                any = true;
            }
            c if c.is_ascii_whitespace() && !in_quote => {
                if any {
                    words.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        words.push(cur);
    }
    words
}

/// Decode a hex string into exactly `N` bytes.
pub fn hex_bytes<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Lower-case hex of some bytes.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parse the contents of `/proc/cmdline`.
pub fn parse(cmdline: &str) -> Result<Config, CmdlineError> {
    let mut roothash = None;
    let mut fstype = DEFAULT_FSTYPE.to_string();
    let mut init = DEFAULT_INIT.to_string();
    let mut timeout_secs = DEFAULT_TIMEOUT_SECS;
    for word in split(cmdline) {
        let Some((key, value)) = word.split_once('=') else {
            continue;
        };
        let bad = |key, why| CmdlineError::BadValue {
            key,
            value: value.to_string(),
            why,
        };
        match key {
            "roothash" => {
                roothash = Some(hex_bytes::<32>(value).ok_or_else(|| {
                    bad("roothash", "must be 64 hex digits (a sha256 root hash)")
                })?);
            }
            "kiln.root_fstype" => {
                if value.is_empty() || !value.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return Err(bad(
                        "kiln.root_fstype",
                        "must be a filesystem name such as ext4",
                    ));
                }
                fstype = value.to_string();
            }
            "kiln.init" => {
                if !value.starts_with('/') || value.contains('\0') {
                    return Err(bad("kiln.init", "must be an absolute path"));
                }
                init = value.to_string();
            }
            "kiln.timeout" => {
                timeout_secs = value
                    .parse()
                    .map_err(|_| bad("kiln.timeout", "must be a whole number of seconds"))?;
            }
            _ => {}
        }
    }
    Ok(Config {
        roothash: roothash.ok_or(CmdlineError::MissingRoothash)?,
        fstype,
        init,
        timeout_secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "0123456789abcdef0123456789ABCDEF00112233445566778899aabbccddeeff";

    #[test]
    fn split_like_the_kernel() {
        for (input, want) in [
            ("a b  c\n", vec!["a", "b", "c"]),
            ("x=\"a b\" y", vec!["x=a b", "y"]),
            ("\"x=a b\"", vec!["x=a b"]),
            ("  ", vec![]),
            ("e=\"\"", vec!["e="]),
        ] {
            assert_eq!(split(input), want, "{input:?}");
        }
    }

    #[test]
    fn parse_table() {
        let hash = hex_bytes::<32>(H).unwrap();
        assert_eq!(hash[0], 0x01);
        assert_eq!(hash[31], 0xff);
        let ok = |fstype: &str, init: &str, t| {
            Ok(Config {
                roothash: hash,
                fstype: fstype.into(),
                init: init.into(),
                timeout_secs: t,
            })
        };
        let cases: Vec<(String, Result<Config, CmdlineError>)> = vec![
            (format!("console=ttyS0 roothash={H} quiet"), ok("ext4", "/sbin/init", 30)),
            (
                format!("roothash={H} kiln.init=/lib/systemd/systemd kiln.root_fstype=erofs kiln.timeout=5"),
                ok("erofs", "/lib/systemd/systemd", 5),
            ),
            (
                format!("roothash={} roothash={H}", "f".repeat(64)),
                ok("ext4", "/sbin/init", 30),
            ),
            ("console=ttyS0 ro".into(), Err(CmdlineError::MissingRoothash)),
            (
                "roothash=abc".into(),
                Err(CmdlineError::BadValue {
                    key: "roothash",
                    value: "abc".into(),
                    why: "must be 64 hex digits (a sha256 root hash)",
                }),
            ),
            (
                format!("roothash={}", "g".repeat(64)),
                Err(CmdlineError::BadValue {
                    key: "roothash",
                    value: "g".repeat(64),
                    why: "must be 64 hex digits (a sha256 root hash)",
                }),
            ),
            (
                format!("roothash={H} kiln.init=sbin/init"),
                Err(CmdlineError::BadValue {
                    key: "kiln.init",
                    value: "sbin/init".into(),
                    why: "must be an absolute path",
                }),
            ),
            (
                format!("roothash={H} kiln.root_fstype=ext4,ro"),
                Err(CmdlineError::BadValue {
                    key: "kiln.root_fstype",
                    value: "ext4,ro".into(),
                    why: "must be a filesystem name such as ext4",
                }),
            ),
            (
                format!("roothash={H} kiln.timeout=-1"),
                Err(CmdlineError::BadValue {
                    key: "kiln.timeout",
                    value: "-1".into(),
                    why: "must be a whole number of seconds",
                }),
            ),
        ];
        for (cmdline, want) in cases {
            assert_eq!(parse(&cmdline), want, "{cmdline}");
        }
    }

    #[test]
    fn hex_round_trip() {
        assert_eq!(to_hex(&hex_bytes::<32>(H).unwrap()), H.to_lowercase());
        assert_eq!(hex_bytes::<2>("0g00"), None);
        assert_eq!(hex_bytes::<1>("é"), None);
    }
}
