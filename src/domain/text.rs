//! Text as people type it, compared without the accents French puts on letters: shared by
//! the command parser (`arrêter` is `arreter`) and the catalogue search's ranking (a match
//! for `poêle` names a `Poele`).

/// The word with the accents French puts on letters removed, so `arrêter` and `arreter`
/// are the same command; other characters are kept as they are.
pub fn fold(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    for c in word.chars() {
        match c {
            'à' | 'â' | 'ä' => out.push('a'),
            'é' | 'è' | 'ê' | 'ë' => out.push('e'),
            'î' | 'ï' => out.push('i'),
            'ô' | 'ö' => out.push('o'),
            'ù' | 'û' | 'ü' => out.push('u'),
            'ÿ' => out.push('y'),
            'ç' => out.push('c'),
            'œ' => out.push_str("oe"),
            'æ' => out.push_str("ae"),
            _ => out.push(c),
        }
    }
    out
}
