//! debian-web end to end: nginx on the Debian base boots and serves its page
//! (`kiln test`), `kiln inspect` lists nginx, the SBOM validates with the
//! SPDX tools, a locked rebuild with every layer cached needs no network and
//! gives the same image, and a change to the site rebuilds only the app layer.

use std::fs;
use std::path::Path;
use std::process::Command;

use kiln_qemu_tests::{
    kiln, kiln_json, layers_cached, offline_env, require_tool, scratch_repo, shared_store,
};

#[test]
fn debian_web_end_to_end() {
    require_tool("mmdebstrap", "mmdebstrap");
    let repo = scratch_repo();
    let store = shared_store("debian");
    let recipe = repo.path().join("recipes/debian-web.toml");
    let out = repo.path().join("out");
    let (r, o) = (recipe.to_str().unwrap(), out.to_str().unwrap());

    // Boot test (builds first).
    let res = kiln(&["test", r, "-o", o, "--json"], &store, &[]);
    let v: serde_json::Value = serde_json::from_slice(&res.stdout).unwrap_or_default();
    assert!(
        res.status.success(),
        "{}\n{v:#}",
        String::from_utf8_lossy(&res.stderr)
    );
    let image = out.join("debian-web-1.0.raw");
    let built = kiln_json(&["inspect", image.to_str().unwrap()], &store, &[]);
    let digest = built["digest"].as_str().unwrap().to_string();

    // inspect lists nginx with its version.
    let pkgs: Vec<(String, String)> = built["manifest"]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|l| l["packages"].as_array().cloned().unwrap_or_default())
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["version"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let nginx = pkgs
        .iter()
        .find(|(n, _)| n == "nginx-light")
        .expect("nginx-light in inspect");
    assert!(nginx.1.starts_with("1.26"), "trixie's nginx: {nginx:?}");

    // The SBOM validates with the SPDX project's tool.
    let tools = std::env::var("KILN_TOOLS").unwrap_or_else(|_| "/opt/kiln-tools".into());
    let validator = Path::new(&tools).join("bin/pyspdxtools");
    assert!(
        validator.is_file(),
        "{} missing: run scripts/setup-host.sh",
        validator.display()
    );
    let check = Command::new(&validator)
        .arg("-i")
        .arg(out.join("debian-web-1.0.spdx.json"))
        .output()
        .unwrap();
    assert!(
        check.status.success() && check.stdout.is_empty() && check.stderr.is_empty(),
        "{check:?}"
    );

    // Lock, rebuild from the lock: the same image.
    kiln_json(&["lock", r], &store, &[]);
    let lock = fs::read_to_string(repo.path().join("recipes/debian-web.lock")).unwrap();
    assert!(
        lock.contains("name = \"nginx-light\"") && lock.contains("name = \"systemd\""),
        "{lock}"
    );
    let locked = kiln_json(&["build", r, "-o", o], &store, &[]);
    assert_eq!(
        locked["image"]["digest"],
        digest.as_str(),
        "a locked rebuild gives the same image"
    );

    // Network cut, every layer cached: no mmdebstrap, no apt, same digest.
    let env = offline_env(&repo.path().join("shim"), &["mmdebstrap", "apt-get"]);
    let offline = kiln_json(&["build", r, "-o", o], &store, &env);
    assert!(layers_cached(&offline).iter().all(|c| *c), "{offline}");
    assert_eq!(offline["image"]["digest"], digest.as_str());

    // Only the site changes: only the app layer is rebuilt.
    fs::write(
        repo.path().join("layers/apps/web/files/srv/www/index.html"),
        "<h1>debian-web, changed</h1>\n",
    )
    .unwrap();
    let app = kiln_json(&["build", r, "-o", o], &store, &env);
    assert_eq!(layers_cached(&app), [true, true, false], "{app}");
    assert_ne!(app["image"]["digest"], digest.as_str());
}
