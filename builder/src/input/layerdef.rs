//! Layer definitions: `layer.toml` in a layer directory says what kind of
//! layer it is and where its content comes from (Debian packages through
//! mmdebstrap, a directory of files in the repository, or both), how it is
//! stripped, which per-path metadata overrides apply, and which services it
//! declares. The README's "Layer reference" documents every field.

use std::path::{Path, PathBuf};

use globset::GlobMatcher;
use serde::Deserialize;
use toml::Spanned;

use crate::fs::usrmerge::canonical;
use crate::input::source_file::SourceFile;
use crate::util::error::InputError;

/// The three kinds of layer, composed in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerKind {
    /// A stripped base OS: kernel, init, libc or busybox.
    Base,
    /// Distribution packages on top of the base, kept as the difference.
    Packages,
    /// The application's own files, configuration and services.
    App,
}

impl LayerKind {
    /// The name used in files and output.
    pub fn as_str(self) -> &'static str {
        match self {
            LayerKind::Base => "base",
            LayerKind::Packages => "packages",
            LayerKind::App => "app",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLayerFile {
    layer: RawLayer,
    debian: Option<RawDebian>,
    strip: Option<RawStrip>,
    files: Option<RawFiles>,
    #[serde(default, rename = "override")]
    overrides: Vec<RawOverride>,
    #[serde(default)]
    service: Vec<RawService>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLayer {
    kind: Spanned<String>,
    description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDebian {
    suite: Spanned<String>,
    variant: Option<Spanned<String>>,
    packages: Spanned<Vec<Spanned<String>>>,
    mirror: Option<Spanned<String>>,
    components: Option<Vec<Spanned<String>>>,
    architecture: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStrip {
    #[serde(default)]
    delete: Vec<Spanned<String>>,
    #[serde(default)]
    keep: Vec<Spanned<String>>,
    keep_modules: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    purge: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFiles {
    dir: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOverride {
    path: Spanned<String>,
    mode: Option<Spanned<String>>,
    uid: Option<u32>,
    gid: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    name: Spanned<String>,
    command: Spanned<Vec<String>>,
    restart: Option<Spanned<String>>,
}

/// A validated layer definition.
#[derive(Debug, Clone)]
pub struct LayerDef {
    /// The layer directory.
    pub dir: PathBuf,
    /// The `layer.toml` file.
    pub file: PathBuf,
    /// The layer's name: its directory's path relative to the `layers/` root
    /// when it lives under one (`base/busybox`), else the directory name.
    pub name: String,
    /// Its kind.
    pub kind: LayerKind,
    /// Free text.
    pub description: Option<String>,
    /// Debian packages to unpack, if any.
    pub debian: Option<DebianSource>,
    /// Strip rules applied after unpacking the packages.
    pub strip: StripRules,
    /// A directory of files copied into the layer, if any; inside the layer directory.
    pub files: Option<FilesDir>,
    /// Per-path metadata overrides for the files.
    pub overrides: Vec<Override>,
    /// Services the layer declares.
    pub services: Vec<Service>,
}

/// `[debian]`: packages fetched and unpacked by mmdebstrap.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DebianSource {
    /// Suite (`bookworm`).
    pub suite: String,
    /// mmdebstrap variant (`extract`, `essential`, `apt`, `minbase`, …).
    pub variant: String,
    /// Packages, in the order given.
    pub packages: Vec<String>,
    /// Mirror URL; `None` uses the host's apt sources.
    pub mirror: Option<String>,
    /// Archive components.
    pub components: Vec<String>,
    /// Debian architecture.
    pub architecture: String,
}

/// `[strip]`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StripRules {
    /// Globs of paths to delete (`**` crosses directories, `*` does not).
    pub delete: Vec<String>,
    /// Globs exempt from `delete`.
    pub keep: Vec<String>,
    /// When set, every kernel module not named here (or needed by one named here) is deleted.
    pub keep_modules: Option<Vec<String>>,
    /// Debian packages removed whole, files and dpkg database entries
    /// (`crate::layers::purge`), before the globs apply.
    pub purge: Vec<String>,
}

impl StripRules {
    /// Compile the delete/keep globs, in merged-/usr form. Validated at load
    /// time, so this cannot fail then.
    pub fn matchers(&self) -> (Vec<GlobMatcher>, Vec<GlobMatcher>) {
        let compile = |v: &[String]| v.iter().filter_map(|g| glob(&canonical(g)).ok()).collect();
        (compile(&self.delete), compile(&self.keep))
    }
}

/// `[[override]]`: metadata for the files matching a glob.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Override {
    /// Glob over layer paths (`usr/bin/*`).
    pub path: String,
    /// Permission bits.
    pub mode: Option<u32>,
    /// Owner.
    pub uid: Option<u32>,
    /// Group.
    pub gid: Option<u32>,
    /// The line in layer.toml, for errors found later (a glob matching nothing).
    #[serde(skip)]
    pub line: usize,
}

/// How a service is restarted when it exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Restart {
    /// Start it again, after a second.
    Always,
    /// Leave it stopped.
    No,
}

/// `[[service]]`: a long-running program the image's init starts at boot.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Service {
    /// Name, also the file name under `/etc/kiln/services/`.
    pub name: String,
    /// argv; `command[0]` is an absolute path that must exist in the composed image.
    pub command: Vec<String>,
    /// Restart policy.
    pub restart: Restart,
    /// The line in layer.toml.
    #[serde(skip)]
    pub line: usize,
}

/// A layer's `[files]` directory, proven to lie inside the layer's
/// directory: `dir` is relative, and its canonical path (every `..` and
/// symlink resolved, the last component included) starts with the layer
/// directory's canonical path. Only [`FilesDir::resolve`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilesDir {
    /// The canonical path: what is read.
    real: PathBuf,
}

impl FilesDir {
    /// Resolve `dir` (as written in `layer.toml`) against the layer
    /// directory. The error says why it is not a directory inside it.
    pub fn resolve(layer_dir: &Path, dir: &str) -> Result<FilesDir, String> {
        let rel = Path::new(dir);
        if dir.is_empty() || rel.is_absolute() {
            return Err(format!(
                "{dir:?} must be a relative path inside the layer directory {}",
                layer_dir.display()
            ));
        }
        let joined = layer_dir.join(rel);
        let root = std::fs::canonicalize(layer_dir)
            .map_err(|e| format!("cannot resolve {}: {e}", layer_dir.display()))?;
        let real = match std::fs::canonicalize(&joined) {
            Ok(p) => p,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(format!("directory {} does not exist", joined.display()))
            }
            Err(e) => return Err(format!("cannot resolve {}: {e}", joined.display())),
        };
        if !real.starts_with(&root) {
            return Err(format!(
                "{} resolves to {}, outside the layer directory {}; [files] must stay inside it",
                joined.display(),
                real.display(),
                root.display()
            ));
        }
        if !real.is_dir() {
            return Err(format!("{} is not a directory", joined.display()));
        }
        Ok(FilesDir { real })
    }

    /// The directory to read (canonical).
    pub fn path(&self) -> &Path {
        &self.real
    }
}

/// Compile a layer glob: `*` stays within one path component, `**` crosses them.
pub fn glob(pattern: &str) -> Result<GlobMatcher, globset::Error> {
    Ok(globset::GlobBuilder::new(pattern.trim_start_matches('/'))
        .literal_separator(true)
        .build()?
        .compile_matcher())
}

fn parse_mode(s: &str) -> Option<u32> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    if digits.is_empty() || digits.len() > 4 {
        return None;
    }
    u32::from_str_radix(digits, 8).ok()
}

/// An absolute path naming a file: `/a/b`, with no empty, `.` or `..`
/// component (the image's init resolves `..` after symlinks, kiln's checks
/// lexically; a clean path means the same to both).
fn clean_program_path(p: &str) -> bool {
    p.strip_prefix('/')
        .is_some_and(|rest| rest.split('/').all(|c| !matches!(c, "" | "." | "..")))
}

fn simple_word(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._+-:".contains(c))
}

impl LayerDef {
    /// Read and validate `DIR/layer.toml`.
    pub fn load(dir: &Path) -> Result<LayerDef, InputError> {
        let file = dir.join("layer.toml");
        let src = SourceFile::read(&file)?;
        Self::from_source(dir, &src)
    }

    /// Validate a layer file already read: each section in turn, then the
    /// checks across sections.
    pub fn from_source(dir: &Path, src: &SourceFile) -> Result<LayerDef, InputError> {
        let raw: RawLayerFile = src.parse()?;
        let kind = layer_kind(&raw.layer, src)?;
        let debian = match &raw.debian {
            None => None,
            Some(d) => Some(debian_source(d, kind, src)?),
        };
        let strip = strip_rules(raw.strip.as_ref(), debian.is_some(), src)?;
        let files = match &raw.files {
            None => None,
            Some(f) => Some(
                FilesDir::resolve(dir, f.dir.get_ref())
                    .map_err(|m| src.error(f.dir.span(), "files.dir", m))?,
            ),
        };
        if files.is_none() && debian.is_none() {
            return Err(InputError {
                file: src.display.clone(),
                line: None,
                field: None,
                message:
                    "the layer has no content: give a [debian] section, a [files] section, or both"
                        .into(),
            });
        }

        let overrides = overrides(&raw.overrides, files.is_some(), src)?;
        let services = services(&raw.service, src)?;
        Ok(LayerDef {
            dir: dir.to_path_buf(),
            file: src.path.clone(),
            name: layer_name(dir),
            kind,
            description: raw.layer.description.clone(),
            debian,
            strip,
            files,
            overrides,
            services,
        })
    }
}

/// `[layer] kind`.
fn layer_kind(layer: &RawLayer, src: &SourceFile) -> Result<LayerKind, InputError> {
    Ok(match layer.kind.get_ref().as_str() {
        "base" => LayerKind::Base,
        "packages" => LayerKind::Packages,
        "app" => LayerKind::App,
        other => {
            return Err(src.error(
                layer.kind.span(),
                "layer.kind",
                format!("unknown kind {other:?}: expected \"base\", \"packages\" or \"app\""),
            ))
        }
    })
}

/// `[debian]`, which an app layer must not have.
fn debian_source(
    d: &RawDebian,
    kind: LayerKind,
    src: &SourceFile,
) -> Result<DebianSource, InputError> {
    if kind == LayerKind::App {
        return Err(src.error(
            d.suite.span(),
            "debian",
            "an app layer holds files, not Debian packages: use a \"packages\" layer",
        ));
    }
    if !simple_word(d.suite.get_ref()) {
        return Err(src.error(d.suite.span(), "debian.suite", "not a suite name"));
    }
    if d.packages.get_ref().is_empty() {
        return Err(src.error(
            d.packages.span(),
            "debian.packages",
            "list at least one package",
        ));
    }
    let mut packages = Vec::new();
    for (i, p) in d.packages.get_ref().iter().enumerate() {
        if !simple_word(p.get_ref()) || p.get_ref().starts_with('-') {
            return Err(src.error(
                p.span(),
                &format!("debian.packages[{i}]"),
                format!("{:?} is not a Debian package name", p.get_ref()),
            ));
        }
        packages.push(p.get_ref().clone());
    }
    let variant = match &d.variant {
        None => "extract".to_string(),
        Some(v) => {
            const VARIANTS: &[&str] = &[
                "extract",
                "custom",
                "essential",
                "apt",
                "required",
                "minbase",
                "buildd",
                "important",
                "debootstrap",
                "standard",
            ];
            if !VARIANTS.contains(&v.get_ref().as_str()) {
                return Err(src.error(
                    v.span(),
                    "debian.variant",
                    format!(
                        "unknown mmdebstrap variant {:?}: one of {}",
                        v.get_ref(),
                        VARIANTS.join(", ")
                    ),
                ));
            }
            v.get_ref().clone()
        }
    };
    let mirror = match &d.mirror {
        Some(m)
            if !(m.get_ref().starts_with("http://")
                || m.get_ref().starts_with("https://")
                || m.get_ref().starts_with("file:/")) =>
        {
            return Err(src.error(
                m.span(),
                "debian.mirror",
                "must be an http://, https:// or file:/ URL",
            ))
        }
        m => m.as_ref().map(|m| m.get_ref().clone()),
    };
    let mut components = Vec::new();
    for (i, c) in d.components.iter().flatten().enumerate() {
        if !simple_word(c.get_ref()) {
            return Err(src.error(
                c.span(),
                &format!("debian.components[{i}]"),
                "not a component name",
            ));
        }
        components.push(c.get_ref().clone());
    }
    if components.is_empty() {
        components.push("main".to_string());
    }
    let architecture = match &d.architecture {
        None => "amd64".to_string(),
        Some(a) if a.get_ref() != "amd64" => {
            return Err(src.error(
                a.span(),
                "debian.architecture",
                "only amd64 images are supported",
            ))
        }
        Some(a) => a.get_ref().clone(),
    };
    Ok(DebianSource {
        suite: d.suite.get_ref().clone(),
        variant,
        packages,
        mirror,
        components,
        architecture,
    })
}

/// `[strip]`, which only a layer with Debian packages may have.
fn strip_rules(
    raw: Option<&RawStrip>,
    has_debian: bool,
    src: &SourceFile,
) -> Result<StripRules, InputError> {
    let default = RawStrip::default();
    let raw_strip = raw.unwrap_or(&default);
    let mut strip = StripRules::default();
    for (list, out, field) in [
        (&raw_strip.delete, &mut strip.delete, "strip.delete"),
        (&raw_strip.keep, &mut strip.keep, "strip.keep"),
    ] {
        for (i, g) in list.iter().enumerate() {
            glob(g.get_ref()).map_err(|e| {
                src.error(g.span(), &format!("{field}[{i}]"), format!("bad glob: {e}"))
            })?;
            // Merged /usr: `lib/modules/**` means `usr/lib/modules/**`.
            out.push(canonical(g.get_ref().trim_start_matches('/')).into_owned());
        }
    }
    if let Some(mods) = &raw_strip.keep_modules {
        let mut v = Vec::new();
        for (i, m) in mods.iter().enumerate() {
            if m.get_ref().is_empty() || m.get_ref().contains(['/', ' ']) {
                return Err(src.error(
                    m.span(),
                    &format!("strip.keep_modules[{i}]"),
                    "must be a module name like \"virtio_net\"",
                ));
            }
            v.push(m.get_ref().replace('-', "_"));
        }
        strip.keep_modules = Some(v);
    }
    for (i, p) in raw_strip.purge.iter().enumerate() {
        let name = p.get_ref();
        // Debian Policy 5.6.1: lower case letters, digits, + - . (two or more, alphanumeric first).
        let valid = name.len() >= 2
            && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
        if !valid {
            return Err(src.error(
                p.span(),
                &format!("strip.purge[{i}]"),
                "must be a Debian package name like \"apt\"",
            ));
        }
        strip.purge.push(name.clone());
    }
    if !has_debian
        && (!strip.delete.is_empty() || strip.keep_modules.is_some() || !strip.purge.is_empty())
    {
        return Err(InputError {
            file: src.display.clone(),
            line: None,
            field: Some("strip".into()),
            message: "strip rules apply to Debian packages; this layer has no [debian] section"
                .into(),
        });
    }
    Ok(strip)
}

/// `[[override]]`s, which only a layer with `[files]` may have.
fn overrides(
    raw: &[RawOverride],
    has_files: bool,
    src: &SourceFile,
) -> Result<Vec<Override>, InputError> {
    let mut overrides = Vec::new();
    for (i, o) in raw.iter().enumerate() {
        if !has_files {
            return Err(src.error(
                o.path.span(),
                &format!("override[{i}]"),
                "overrides apply to [files]; this layer has none",
            ));
        }
        glob(o.path.get_ref()).map_err(|e| {
            src.error(
                o.path.span(),
                &format!("override[{i}].path"),
                format!("bad glob: {e}"),
            )
        })?;
        let mode = match &o.mode {
            None => None,
            Some(m) => Some(
                parse_mode(m.get_ref())
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| {
                        src.error(
                            m.span(),
                            &format!("override[{i}].mode"),
                            format!("{:?} is not an octal mode like \"0755\"", m.get_ref()),
                        )
                    })?,
            ),
        };
        if mode.is_none() && o.uid.is_none() && o.gid.is_none() {
            return Err(src.error(
                o.path.span(),
                &format!("override[{i}]"),
                "sets nothing: give mode, uid or gid",
            ));
        }
        overrides.push(Override {
            path: canonical(o.path.get_ref().trim_start_matches('/')).into_owned(),
            mode,
            uid: o.uid,
            gid: o.gid,
            line: src.line_of(o.path.span().start),
        });
    }
    Ok(overrides)
}

/// `[[service]]`s.
fn services(raw: &[RawService], src: &SourceFile) -> Result<Vec<Service>, InputError> {
    let mut services: Vec<Service> = Vec::new();
    for (i, s) in raw.iter().enumerate() {
        let field = format!("service[{i}]");
        if !simple_word(s.name.get_ref()) || s.name.get_ref().contains(':') {
            return Err(src.error(
                s.name.span(),
                &format!("{field}.name"),
                "must be a simple name like \"hello\"",
            ));
        }
        if services.iter().any(|x| x.name == *s.name.get_ref()) {
            return Err(src.error(
                s.name.span(),
                &format!("{field}.name"),
                "service declared twice",
            ));
        }
        match s.command.get_ref().first() {
            Some(c) if c.starts_with('/') => {
                if !clean_program_path(c) {
                    return Err(src.error(
                        s.command.span(),
                        &format!("{field}.command"),
                        format!("{c:?} must name a program by a clean absolute path (no trailing /, no empty, . or .. components)"),
                    ));
                }
            }
            _ => {
                return Err(src.error(
                    s.command.span(),
                    &format!("{field}.command"),
                    "must be a non-empty argv whose first element is an absolute path",
                ))
            }
        }
        if s.command.get_ref().iter().any(|a| a.contains(['\n', '\0'])) {
            return Err(src.error(
                s.command.span(),
                &format!("{field}.command"),
                "arguments must not contain newlines or NUL",
            ));
        }
        let restart = match s.restart.as_ref().map(|r| r.get_ref().as_str()) {
            None | Some("always") => Restart::Always,
            Some("no") => Restart::No,
            Some(other) => {
                return Err(src.error(
                    s.restart.as_ref().map_or(0..0, |r| r.span()),
                    &format!("{field}.restart"),
                    format!("{other:?}: expected \"always\" or \"no\""),
                ))
            }
        };
        services.push(Service {
            name: s.name.get_ref().clone(),
            command: s.command.get_ref().clone(),
            restart,
            line: src.line_of(s.name.span().start),
        });
    }
    Ok(services)
}

/// `layers/base/busybox` → `base/busybox`; otherwise the last path component.
fn layer_name(dir: &Path) -> String {
    let comps: Vec<String> = dir
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    match comps.iter().rposition(|c| c == "layers") {
        Some(i) if i + 1 < comps.len() => comps[i + 1..].join("/"),
        _ => comps.last().cloned().unwrap_or_else(|| "layer".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        for (s, want) in [
            ("0755", Some(0o755)),
            ("644", Some(0o644)),
            ("0o4755", Some(0o4755)),
            ("9", None),
            ("", None),
            ("12345", None),
        ] {
            assert_eq!(parse_mode(s), want, "{s}");
        }
    }

    #[test]
    fn program_paths() {
        for (p, ok) in [
            ("/usr/lib/hello/start", true),
            ("/bin/.hidden", true),
            ("/", false),
            ("/usr/bin/", false),
            ("//usr/bin/x", false),
            ("/usr/./bin/x", false),
            ("/usr/../bin/x", false),
            ("usr/bin/x", false),
        ] {
            assert_eq!(clean_program_path(p), ok, "{p}");
        }
    }

    #[test]
    fn names() {
        assert_eq!(
            layer_name(Path::new("recipes/../layers/base/busybox")),
            "base/busybox"
        );
        assert_eq!(layer_name(Path::new("/tmp/x/mylayer")), "mylayer");
    }

    #[test]
    fn globs_respect_separators() {
        let g = glob("usr/share/doc/*").unwrap();
        assert!(g.is_match("usr/share/doc/busybox"));
        assert!(!g.is_match("usr/share/doc/busybox/copyright"));
        let g = glob("usr/share/doc/**").unwrap();
        assert!(g.is_match("usr/share/doc/busybox/copyright"));
    }
}
