//! The Extended DNS Error text of a blocked answer, read from real responses: it names the
//! rule and the list by its file name, never the folder a list lives in, and is cut at a
//! character boundary. See: #10.

use hickory_proto::rr::RecordType;
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};

use crate::fake_upstream::{FakeUpstream, a};
use crate::harness::TestServer;

/// The raw bytes of the EDE text (after the 2-byte info code) in a response.
fn ede_bytes(m: &hickory_proto::op::Message) -> Vec<u8> {
    match m
        .edns
        .as_ref()
        .and_then(|e| e.options().get(EdnsCode::from(15)))
    {
        Some(EdnsOption::Unknown(15, data)) if data.len() >= 2 => data[2..].to_vec(),
        other => panic!("no EDE option: {other:?} in {m:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn r10_ede_names_an_absolute_list_by_its_file_name_only() {
    let up = FakeUpstream::start(vec![a("www.example.test.", "192.0.2.1", 60)]).await;
    // A list outside the config folder, given by absolute path.
    let outside = tempfile::tempdir().unwrap();
    let private = outside.path().join("private-lists");
    std::fs::create_dir(&private).unwrap();
    let list = private.join("ads.txt");
    std::fs::write(&list, "# ads\nads.test\n").unwrap();
    let s = TestServer::start(
        &format!(
            "[upstream]\nservers = [\"{}\"]\n[blocking]\nlists = [\"{}\"]\n",
            up.addr,
            list.display()
        ),
        &[],
    )
    .await;
    let m = s.query_edns("x.ads.test.", RecordType::A).await;
    let text = String::from_utf8(ede_bytes(&m)).unwrap();
    assert_eq!(text, "blocked by ads.test (ads.txt:2)");
}

#[tokio::test(flavor = "multi_thread")]
async fn r10_ede_text_is_cut_at_a_character_boundary() {
    let up = FakeUpstream::start(vec![a("www.example.test.", "192.0.2.1", 60)]).await;
    // "blocked by ads.test (" is 21 bytes; 2-byte characters from there put byte 200 in the
    // middle of one.
    let name = format!("{}.txt", "é".repeat(100));
    let s = TestServer::start(
        &format!(
            "[upstream]\nservers = [\"{}\"]\n[blocking]\nlists = [\"{name}\"]\n",
            up.addr
        ),
        &[(&name, "ads.test\n")],
    )
    .await;
    let m = s.query_edns("ads.test.", RecordType::A).await;
    let bytes = ede_bytes(&m);
    assert!(bytes.len() <= 200, "{} bytes", bytes.len());
    let text = String::from_utf8(bytes).expect("the EDE text is valid UTF-8");
    assert!(text.starts_with("blocked by ads.test (éé"), "{text}");
    assert_eq!(text.len(), 199, "cut before the character that crosses 200");
}
