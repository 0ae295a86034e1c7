//! JUnit XML for a boot-test verdict (the Ant/Jenkins schema that CI
//! systems read): one testcase per check, failures with the console tail.

use crate::store::verdict::Verdict;
use crate::vm::boottest::console_tail;

fn xml_escape(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .map(|c| match c {
            '&' => "&amp;".to_string(),
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&apos;".to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// JUnit XML (the Ant/Jenkins schema CI systems read): one testcase per check.
pub fn junit_xml(v: &Verdict) -> String {
    let failures = v.checks.iter().filter(|c| !c.passed).count();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.push_str(&format!(
        "<testsuites tests=\"{}\" failures=\"{failures}\" time=\"{:.3}\">\n  <testsuite name=\"kiln test {}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" time=\"{:.3}\" timestamp=\"{}\">\n",
        v.checks.len(),
        v.duration_secs,
        xml_escape(&v.image),
        v.checks.len(),
        v.duration_secs,
        xml_escape(&v.started_at)
    ));
    x.push_str(&format!(
        "    <properties>\n      <property name=\"image_digest\" value=\"{}\"/>\n      <property name=\"accel\" value=\"{}\"/>\n      <property name=\"qemu\" value=\"{}\"/>\n    </properties>\n",
        xml_escape(&v.image_digest.to_string()),
        xml_escape(&v.accel),
        xml_escape(&v.qemu_version)
    ));
    for c in &v.checks {
        x.push_str(&format!(
            "    <testcase classname=\"kiln.{}\" name=\"{}\" time=\"{:.3}\"",
            xml_escape(&v.image.replace(' ', "-")),
            xml_escape(&c.name),
            c.secs
        ));
        if c.passed {
            x.push_str("/>\n");
        } else {
            x.push_str(&format!(
                ">\n      <failure message=\"{}\">{}</failure>\n      <system-out>{}</system-out>\n    </testcase>\n",
                xml_escape(&c.detail),
                xml_escape(&c.detail),
                xml_escape(&console_tail(v))
            ));
        }
    }
    x.push_str("  </testsuite>\n</testsuites>\n");
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::verdict::{CheckResult, Phases, SCHEMA};
    use crate::util::exec::CommandRunExt;
    use std::process::Command;

    #[test]
    fn junit_has_a_testcase_per_check_and_escapes() {
        let v = Verdict {
            schema: SCHEMA.into(),
            image_digest: crate::util::digest::Digest::of(b""),
            image: "hello 1.0".into(),
            passed: false,
            failed_check: Some("http[0]".into()),
            checks: vec![
                CheckResult {
                    name: "console[0] a<b".into(),
                    passed: true,
                    secs: 1.0,
                    detail: "ok".into(),
                },
                CheckResult {
                    name: "http[0] GET :8080/".into(),
                    passed: false,
                    secs: 2.0,
                    detail: "status 500 & \"x\"".into(),
                },
            ],
            phases: Phases::default(),
            duration_secs: 3.0,
            qemu_version: "QEMU".into(),
            firmware: "f".into(),
            accel: "tcg".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            kiln_version: "0".into(),
            console_log: None,
            secure_boot: false,
        };
        let x = junit_xml(&v);
        assert_eq!(x.matches("<testcase ").count(), 2);
        assert!(x.contains("name=\"console[0] a&lt;b\""));
        assert!(x.contains("<failure message=\"status 500 &amp; &quot;x&quot;\""));
        assert!(x.contains("tests=\"2\" failures=\"1\""));
        // Well-formed for an outside XML parser.
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("j.xml");
        std::fs::write(&f, &x).unwrap();
        let out = Command::new("python3")
            .arg("-c")
            .arg("import sys, xml.etree.ElementTree as E; r = E.parse(sys.argv[1]).getroot(); print(len(r.findall('.//testcase')))")
            .arg(&f)
            .run_get_string()
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(out.trim(), "2");
    }
}
