//! A French conversation in French words: the commands are understood, whatever the
//! client's locale, and answered in the conversation's language.

use crate::helpers::TestApp;

/// Sends `text` with `locale` and returns the single reply.
async fn say_in(t: &TestApp, locale: &str, conversation: &str, text: &str) -> String {
    t.channel.take();
    let mut m = t.message(conversation, text);
    m["locale"] = locale.into();
    let (status, body) = t.post(&m).await;
    assert_eq!((status, body.as_str()), (200, ""), "{text:?}");
    let got = t.channel.take();
    assert_eq!(got.len(), 1, "one reply to {text:?}, got {got:?}");
    got[0].text().to_owned()
}

#[tokio::test]
async fn a_french_conversation_watches_lists_and_stops_in_french() {
    let t = TestApp::spawn().await;
    let fr = |text: &'static str| say_in(&t, "fr-FR", "c1", text);

    let help = fr("aide").await;
    assert!(help.contains("Voici ce que je sais faire"), "{help}");
    assert!(help.contains("`surveiller <lien>`"), "{help}");

    let reply = fr("surveiller https://shop.example/p/1").await;
    assert!(reply.contains("Surveillance n°1 enregistrée"), "{reply}");
    let reply = fr("Suivre https://shop.example/p/2 seuil 99,90").await;
    assert!(
        reply.contains("n°2") && reply.contains("un prix de 99,9 ou moins"),
        "{reply}"
    );

    let list = fr("liste").await;
    assert!(
        list.contains("1. https://shop.example/p/1")
            && list.contains("2. https://shop.example/p/2"),
        "{list}"
    );
    assert_eq!(fr("mes suivis").await, list);

    let reply = fr("ne plus suivre 2").await;
    assert!(reply.contains("Surveillance n°2 arrêtée"), "{reply}");
    assert_eq!(t.app().store().stats().await.unwrap().watches, 1);

    let reply = fr("surveler https://shop.example/p/3").await;
    assert!(reply.contains("Vouliez-vous dire `surveiller`"), "{reply}");
    assert_eq!(t.app().store().stats().await.unwrap().watches, 1);
}

#[tokio::test]
async fn french_words_are_understood_on_an_english_client() {
    let t = TestApp::spawn().await;
    let reply = say_in(&t, "en-US", "c1", "surveiller https://shop.example/p/1").await;
    assert!(reply.contains("Watch #1 stored"), "{reply}");
    let list = say_in(&t, "en-US", "c1", "Liste").await;
    assert!(list.contains("1. https://shop.example/p/1"), "{list}");
    let reply = say_in(&t, "en-US", "c1", "arreter tout").await;
    assert!(reply.contains("Stopped watching #1"), "{reply}");
    let help = say_in(&t, "en-US", "c1", "aide").await;
    assert!(help.contains("Here is what I can do"), "{help}");
}
