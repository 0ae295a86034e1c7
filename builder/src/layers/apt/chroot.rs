//! How apt runs for a package layer: on a thread of its own, in a private
//! mount namespace over the materialised lower root (see the parent module's
//! steps 2 and 3), with the root's own apt or the host's.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nix::mount::MsFlags;

use crate::input::layerdef::DebianSource;
use crate::layers::aptlists;
use crate::layers::downloads::{Downloads, Watched};
use crate::layers::source::NO_INITRD;
use crate::util::error::EnvError;
use crate::util::exec::{whole_tree, CommandRunExt};
use crate::util::progress::Transfer;

/// Device nodes bound from the host into the chroot's private `/dev`.
const DEV_NODES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// The PATH the chroot's commands run with (the environment is cleared).
const CHROOT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Which apt installs: the lower root's own, run in the chroot, or the
/// host's (for a base that purged apt), run outside with `Dir` pointing at
/// the root and `DPkg::Chroot-Directory` making it run the root's dpkg (and
/// so the maintainer scripts) in the chroot, as mmdebstrap does.
#[derive(Debug, Clone)]
pub(super) enum AptFrom {
    Chroot,
    Host(PathBuf),
}

/// What the chroot thread needs.
pub(super) struct Chroot {
    pub(super) apt: AptFrom,
    pub(super) root: PathBuf,
    pub(super) debs: PathBuf,
    /// `STORE/apt-lists`: indexes kept from earlier apt runs.
    pub(super) lists_kept: PathBuf,
    /// The store's scratch directory, for writing into `lists_kept`.
    pub(super) tmp: PathBuf,
    /// What apt downloads, on the progress line.
    pub(super) transfer: Transfer,
    pub(super) src: DebianSource,
    pub(super) sde: i64,
}

fn mount_err(what: &str, target: &Path, e: nix::Error) -> anyhow::Error {
    EnvError::new(format!(
        "mounting {what} on {} for the apt chroot failed: {e}",
        target.display()
    ))
    .into()
}

impl Chroot {
    /// Runs on its own thread: the mount namespace it enters is that
    /// thread's alone and ends with it.
    pub(super) fn run(&self) -> Result<()> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).map_err(|e| {
            EnvError::new(format!(
                "cannot create a mount namespace for the apt chroot (unshare(CLONE_NEWNS): {e}); \
                 kiln needs CAP_SYS_ADMIN for package layers"
            ))
        })?;
        // Before any mount: nothing done here may propagate to the host.
        nix::mount::mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(|e| mount_err("private propagation", Path::new("/"), e))?;
        self.mount_all()?;
        // Started here, so that it sees this namespace's mounts (the lists'
        // tmpfs); the .debs land in the store's download cache.
        let lists_partial = self.root.join("var/lib/apt/lists/partial");
        let debs = self.debs.clone();
        let _downloads = Downloads::watch(
            move || {
                vec![
                    Watched::Archive(debs.clone()),
                    Watched::Partial(lists_partial.clone()),
                ]
            },
            Default::default(),
            self.transfer.clone(),
        );
        self.apt()
    }

    fn tmpfs(&self, rel: &str, mode: &str) -> Result<()> {
        let target = self.root.join(rel);
        nix::mount::mount(
            Some("tmpfs"),
            &target,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(format!("mode={mode}").as_str()),
        )
        .map_err(|e| mount_err("tmpfs", &target, e))
    }

    fn bind(&self, source: &Path, rel: &str) -> Result<()> {
        let target = self.root.join(rel);
        nix::mount::mount(
            Some(source),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| mount_err(&source.display().to_string(), &target, e))
    }

    fn mount_all(&self) -> Result<()> {
        let r = &self.root;
        self.tmpfs("dev", "0755")?;
        for n in DEV_NODES {
            std::fs::write(r.join("dev").join(n), b"")?;
            self.bind(&Path::new("/dev").join(n), &format!("dev/{n}"))?;
        }
        for (link, target) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ] {
            std::os::unix::fs::symlink(target, r.join("dev").join(link))?;
        }
        std::fs::create_dir(r.join("dev/pts"))?;
        std::fs::create_dir(r.join("dev/shm"))?;
        let proc_ = r.join("proc");
        nix::mount::mount(
            Some("proc"),
            &proc_,
            Some("proc"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None::<&str>,
        )
        .map_err(|e| mount_err("proc", &proc_, e))?;
        let sys = r.join("sys");
        nix::mount::mount(
            Some("sysfs"),
            &sys,
            Some("sysfs"),
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None::<&str>,
        )
        .map_err(|e| mount_err("sysfs", &sys, e))?;
        self.tmpfs("tmp", "1777")?;
        self.tmpfs("run", "0755")?;
        self.tmpfs("var/lib/apt/lists", "0755")?;
        std::fs::create_dir(r.join("var/lib/apt/lists/partial"))?;
        // The indexes the base layer's mmdebstrap (or an earlier layer)
        // fetched, where they still verify: apt-get update then fetches
        // only the Release files when the archive has not changed.
        let seeded = aptlists::seed(&self.lists_kept, &r.join("var/lib/apt/lists"))?;
        tracing::debug!(files = seeded, "apt lists seeded from the store");
        self.tmpfs("var/cache/apt", "0755")?;
        std::fs::create_dir(r.join("var/cache/apt/archives"))?;
        self.bind(&self.debs, "var/cache/apt/archives")?;
        let host_resolv = std::fs::canonicalize("/etc/resolv.conf");
        match host_resolv {
            Ok(p) => self.bind(&p, "etc/resolv.conf")?,
            Err(e) => tracing::warn!(
                "no /etc/resolv.conf on the host ({e}); apt may not resolve its mirror"
            ),
        }
        Ok(())
    }

    /// `chroot ROOT ARGV…` with a clean, fixed environment, bound to kiln's
    /// life with everything it starts (dpkg, maintainer scripts: a PID
    /// namespace where kiln may make one, [`whole_tree`]): it runs on the
    /// apt thread, which waits for it.
    fn cmd(&self, argv: &[String]) -> Result<std::process::Command> {
        let mut c = whole_tree("chroot")?;
        c.arg(&self.root).args(argv);
        self.environment(&mut c);
        Ok(c)
    }

    /// The clean, fixed environment apt, dpkg and the maintainer scripts
    /// run with, and the binding to kiln's life.
    fn environment(&self, c: &mut std::process::Command) {
        c.env_clear()
            .env("PATH", CHROOT_PATH)
            .env("HOME", "/root")
            .env("LC_ALL", "C.UTF-8")
            .env("TZ", "UTC")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("DEBCONF_NONINTERACTIVE_SEEN", "true")
            .env("SOURCE_DATE_EPOCH", self.sde.to_string())
            .env(NO_INITRD.0, NO_INITRD.1)
            .lifecycle_bind();
    }

    /// The host's `apt-get` for a root without apt: configured by an
    /// APT_CONFIG file (read before apt's configuration directory, so that
    /// the root's `apt.conf.d` is the one read), in [`Self::environment`].
    fn host_apt(&self, apt_get: &Path, argv: &[String]) -> Result<std::process::Command> {
        let conf_dir = self.root.join("tmp/kiln-apt");
        std::fs::create_dir_all(&conf_dir)?;
        let conf = conf_dir.join("apt.conf");
        let root = self.root.display();
        std::fs::write(
            &conf,
            format!(
                "Dir \"{root}/\";\n\
                 Dir::Bin::Methods \"/usr/lib/apt/methods/\";\n\
                 Dir::Bin::dpkg \"/usr/bin/dpkg\";\n\
                 DPkg::Chroot-Directory \"{root}/\";\n\
                 APT::Architecture \"{arch}\";\n\
                 APT::Architectures {{ \"{arch}\"; }};\n",
                arch = self.src.architecture
            ),
        )?;
        let mut c = whole_tree(&apt_get.display().to_string())?;
        c.args(&argv[1..]);
        self.environment(&mut c);
        c.env("APT_CONFIG", &conf);
        Ok(c)
    }

    /// Packages the lower root lacks that its installed packages depend
    /// on, and Essential packages of the archive it does not have (read
    /// from dpkg's status and the indexes `apt-get update` just fetched).
    fn purged_needs(&self) -> Result<Vec<String>> {
        let status = std::fs::read_to_string(self.root.join("var/lib/dpkg/status"))
            .context("reading the lower root's dpkg status")?;
        let mut needs: std::collections::BTreeSet<String> =
            crate::model::deb::unmet_dependencies(&status)
                .into_iter()
                .collect();
        let installed: std::collections::BTreeSet<String> =
            crate::model::deb::parse_dpkg_status(&status)
                .into_iter()
                .filter(|e| e.is_installed())
                .map(|e| e.package)
                .collect();
        let lists = self.root.join("var/lib/apt/lists");
        for e in
            std::fs::read_dir(&lists).with_context(|| format!("reading {}", lists.display()))?
        {
            let path = e?.path();
            if path.to_string_lossy().ends_with("_Packages") {
                let index = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                needs.extend(
                    crate::model::deb::essential_packages(&index)
                        .into_iter()
                        .filter(|p| !installed.contains(p)),
                );
            }
        }
        Ok(needs.into_iter().collect())
    }

    fn apt(&self) -> Result<()> {
        let mut opts: Vec<String> = [
            "APT::Sandbox::User=root",
            "APT::Keep-Downloaded-Packages=true",
            "APT::Install-Recommends=false",
            "Acquire::Languages=none",
            "Dpkg::Use-Pty=false",
            "Dpkg::Options::=--force-confdef",
            "Dpkg::Options::=--force-confold",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Paths apt is given: inside the chroot, or the host's view of them.
        let apt_path = |p: &str| match self.apt {
            AptFrom::Chroot => p.to_string(),
            AptFrom::Host(_) => format!("{}{p}", self.root.display()),
        };
        if let Some(mirror) = &self.src.mirror {
            // The layer's own mirror, for this install only: the image keeps
            // the sources the lower layers gave it. /tmp is this namespace's tmpfs.
            let list = format!(
                "deb {mirror} {} {}\n",
                self.src.suite,
                self.src.components.join(" ")
            );
            std::fs::create_dir_all(self.root.join("tmp/kiln-apt/sources.list.d"))?;
            std::fs::write(self.root.join("tmp/kiln-apt/sources.list"), list)?;
            opts.push(format!(
                "Dir::Etc::SourceList={}",
                apt_path("/tmp/kiln-apt/sources.list")
            ));
            opts.push(format!(
                "Dir::Etc::SourceParts={}",
                apt_path("/tmp/kiln-apt/sources.list.d")
            ));
        }
        let with_opts = |args: &[&str]| -> Vec<String> {
            let mut v = vec!["apt-get".to_string(), "-q".into()];
            for o in &opts {
                v.push("-o".into());
                v.push(o.clone());
            }
            v.extend(args.iter().map(|s| s.to_string()));
            v
        };
        let run = |argv: &[String]| match &self.apt {
            AptFrom::Chroot => self.cmd(argv),
            AptFrom::Host(apt_get) => self.host_apt(apt_get, argv),
        };
        let failed = |step: &str| {
            format!(
                "{step} {} failed (packages: {})",
                match self.apt {
                    AptFrom::Chroot => "in the chroot",
                    AptFrom::Host(_) => "(the host's, over the chroot)",
                },
                self.src.packages.join(", ")
            )
        };
        run(&with_opts(&["update"]))?
            .run()
            .with_context(|| failed("apt-get update"))?;
        // Kept for the next apt run; only a cache, so a store that cannot
        // take them costs the next run a download, not this build.
        let lists = self.root.join("var/lib/apt/lists");
        if let Err(e) = aptlists::save_dir(&lists, &self.lists_kept, &self.tmp) {
            tracing::warn!(
                "keeping apt's indexes in {}: {e:#}",
                self.lists_kept.display()
            );
        }
        // A base that purged packages (`[strip] purge`, e.g. debconf and
        // perl-base) gets back, in this layer, what the installed packages
        // depend on and the Essential ones every maintainer script may use:
        // first, on their own, so that apt sees a whole system when it
        // resolves the layer's packages.
        let restore = self.purged_needs()?;
        if !restore.is_empty() {
            tracing::info!(packages = ?restore, "installing what the lower layers purged and need");
            let mut fix = with_opts(&["install", "-y", "--fix-broken", "--no-install-recommends"]);
            fix.extend(restore.iter().cloned());
            run(&fix)?
                .run_get_output()
                .with_context(|| failed(&format!("apt-get install {}", restore.join(" "))))?;
        }
        let mut install = with_opts(&["install", "-y", "--no-install-recommends"]);
        install.extend(self.src.packages.iter().cloned());
        let out = run(&install)?
            .run_get_output()
            .with_context(|| failed("apt-get install"))?;
        tracing::debug!(stdout = %String::from_utf8_lossy(&out), "apt-get install");
        Ok(())
    }
}

/// Kill any process a maintainer script left running inside the chroot (it
/// would keep the namespace, and files, busy). Found by its root directory.
pub(super) fn kill_leftovers(root: &Path) {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if std::fs::read_link(e.path().join("root")).is_ok_and(|r| r == root) {
            tracing::warn!(pid, "killing a process left running in the apt chroot");
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}
