//! debian-web end to end: nginx on the Debian base boots and serves its page
//! (`kiln test`: an HTTP probe, a HEAD exchange, curl run on the host),
//! `kiln inspect` lists nginx, the SBOM validates with the
//! SPDX tools, a locked rebuild with every layer cached needs no network and
//! gives the same image, a change to the site rebuilds only the app layer,
//! and the image signed for Secure Boot (its SBOM naming the signer still
//! valid) passes `kiln test --secure-boot --tpm`.

use std::fs;
use std::path::Path;
use std::process::Command;

use kiln_qemu_tests::{
    kiln, kiln_json, layers_cached, offline_env, require_tool, scratch_repo, shared_store,
};

#[test]
fn debian_web_end_to_end() {
    require_tool("mmdebstrap", "mmdebstrap");
    require_tool("curl", "curl");
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
    // The recipe's own protocol exchange and host program ran and passed.
    let checks = v["checks"]
        .as_array()
        .expect("the verdict lists its checks");
    for (want, detail) in [
        ("tcp[0] :80", "replies matching /^HTTP/1\\.1 200 OK/"),
        (
            "command[0] curl --silent --show-error --fail --max-time 10 http://127.0.0.1:{port:80}/",
            "stdout matches /debian-web, built by kiln/",
        ),
    ] {
        let c = checks
            .iter()
            .find(|c| c["name"] == want)
            .unwrap_or_else(|| panic!("{want} missing from {v:#}"));
        assert_eq!(c["passed"], true, "{c}");
        assert!(c["detail"].as_str().unwrap().contains(detail), "{c}");
    }
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
    let page = repo.path().join("layers/apps/web/files/srv/www/index.html");
    let original_page = fs::read(&page).unwrap();
    fs::write(
        repo.path().join("layers/apps/web/files/srv/www/index.html"),
        "<h1>debian-web, changed</h1>\n",
    )
    .unwrap();
    let app = kiln_json(&["build", r, "-o", o], &store, &env);
    assert_eq!(layers_cached(&app), [true, true, false], "{app}");
    assert_ne!(app["image"]["digest"], digest.as_str());

    // Signed for Secure Boot (layers cached): the SBOM naming the signer
    // validates, and the image boots enforced with a TPM, the guest kernel
    // reporting Secure Boot and kiln-init the predicted PCR 11.
    fs::write(&page, &original_page).unwrap();
    let keys = repo.path().join("sb");
    kiln_json(
        &["keygen", "--secure-boot", "-o", keys.to_str().unwrap()],
        &store,
        &[],
    );
    let signed_out = repo.path().join("signed");
    let (key, cert) = (keys.join("db.key"), keys.join("db.crt"));
    let signed = kiln_json(
        &[
            "build",
            r,
            "-o",
            signed_out.to_str().unwrap(),
            "--secure-boot-key",
            key.to_str().unwrap(),
            "--secure-boot-cert",
            cert.to_str().unwrap(),
        ],
        &store,
        &env,
    );
    let sbom = signed_out.join("debian-web-1.0.spdx.json");
    assert!(fs::read_to_string(&sbom)
        .unwrap()
        .contains("UKI signed for UEFI Secure Boot by CN=kiln Secure Boot db"));
    let check = Command::new(&validator)
        .arg("-i")
        .arg(&sbom)
        .output()
        .unwrap();
    assert!(
        check.status.success() && check.stdout.is_empty() && check.stderr.is_empty(),
        "{check:?}"
    );
    let res = kiln(
        &[
            "test",
            signed["image"]["path"].as_str().unwrap(),
            "--secure-boot",
            keys.to_str().unwrap(),
            "--tpm",
            "--json",
        ],
        &store,
        &[],
    );
    let v: serde_json::Value = serde_json::from_slice(&res.stdout).unwrap_or_default();
    assert!(
        res.status.success(),
        "{}\n{v:#}",
        String::from_utf8_lossy(&res.stderr)
    );
    for name in ["secure_boot", "pcr11"] {
        let c = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no {name} check: {v:#}"));
        assert_eq!(c["passed"], true, "{v:#}");
    }
}
