//! Error text: an error that carries another as its source does not print
//! it as well, so `{:#}` (how kiln prints errors) names every cause once.
//! A full disk used to say "No space left on device (os error 28): No space
//! left on device (os error 28)".

use kiln::fs::fat::FatError;
use kiln::fs::gpt::GptError;
use kiln::util::record::ReadError;

#[test]
fn every_cause_is_printed_once() {
    let enospc = || std::io::Error::from_raw_os_error(28);
    let errors: Vec<anyhow::Error> = vec![
        GptError::Io {
            what: "the ESP".into(),
            source: enospc(),
        }
        .into(),
        FatError::Fatfs {
            path: "EFI/BOOT".into(),
            source: enospc(),
        }
        .into(),
        ReadError::Io(enospc()).into(),
    ];
    for e in errors {
        let text = format!("{e:#}");
        assert_eq!(text.matches("os error 28").count(), 1, "{text}");
    }
}
