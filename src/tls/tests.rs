use std::time::SystemTime;

use super::*;

fn pair_in(dir: &Path, sub: &str) -> (PathBuf, PathBuf, String) {
    let w = selfsigned::write("dns.lan", &dir.join(sub), false, SystemTime::now()).unwrap();
    (w.cert, w.key, w.pin)
}

fn served_pin(c: &Certs) -> String {
    selfsigned::spki_pin(c.current().cert.first().unwrap()).unwrap()
}

#[test]
fn load_errors_name_the_file_and_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, _) = pair_in(dir.path(), "a");
    let (_, other_key, _) = pair_in(dir.path(), "b");
    let missing = dir.path().join("nope.pem");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "hello\n").unwrap();
    let cases: [(&Path, &Path, &str); 5] = [
        (&missing, &key, "nope.pem: cannot read"),
        (&cert, &missing, "nope.pem: cannot read"),
        (&garbage, &key, "garbage.pem: no certificate in the file"),
        (&cert, &garbage, "garbage.pem: no private key in the file"),
        (
            &cert,
            &other_key,
            "the private key does not belong to the certificate",
        ),
    ];
    for (c, k, want) in cases {
        let e = load_pair(c, k).unwrap_err().to_string();
        assert!(e.contains(want), "{e}");
    }
    // The key file given as the certificate: it holds no certificate.
    let e = load_pair(&key, &key).unwrap_err().to_string();
    assert!(
        e.contains("key.pem: no certificate") && e.contains("BEGIN CERTIFICATE"),
        "{e}"
    );
    assert!(load_pair(&cert, &key).is_ok());
}

#[test]
fn a_changed_pair_is_served_once_settled_and_a_bad_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, pin_a) = pair_in(dir.path(), "a");
    let (cert_b, key_b, pin_b) = pair_in(dir.path(), "b");
    let certs = Certs::load(&cert, &key).unwrap();
    assert_eq!(served_pin(&certs), pin_a);
    assert!(!certs.poll(), "nothing changed");
    // A renewal: both files replaced by rename (certbot switches links likewise).
    std::fs::rename(&cert_b, &cert).unwrap();
    std::fs::rename(&key_b, &key).unwrap();
    assert!(!certs.poll(), "changed: wait for the files to settle");
    assert_eq!(served_pin(&certs), pin_a);
    assert!(certs.poll(), "settled: read");
    assert_eq!(served_pin(&certs), pin_b);
    assert!(!certs.poll(), "read once");
    // A broken key: the last good pair stays, and it is not read again until it changes.
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    assert!(!certs.poll());
    assert!(!certs.poll(), "a bad pair is not served");
    assert_eq!(served_pin(&certs), pin_b);
    assert!(!certs.poll());
    assert!(!certs.reload(), "an explicit reload fails the same way");
    assert_eq!(served_pin(&certs), pin_b);
}
