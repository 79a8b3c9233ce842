package registry

import (
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// Folding a company name to the ASCII letters of a tenant id (Slug).
//
// A letter is decomposed (Unicode compatibility decomposition, NFKD) and
// its marks dropped, which turns "é" into "e", "Å" into "a", "ﬁ" into "fi"
// and full-width "Ａ" into "a". Letters that do not decompose into ASCII
// are looked up in translit: the Latin ones of their own (ß, ø, æ, ł, …),
// and the Greek and Cyrillic alphabets, transliterated as their national
// standards do for passports, simplified to plain letters. Letters of
// other scripts (Chinese, Japanese, Arabic, …) have no short readable
// spelling and separate words, like punctuation; a name of nothing else
// gets the fallback slug. Apostrophes join ("O'Reilly" → "oreilly").

// foldName returns name folded to lowercase ASCII letters and digits, with
// a space wherever words break.
func foldName(name string) string {
	var b strings.Builder
	for _, r := range name {
		foldRune(&b, unicode.ToLower(r))
	}
	return b.String()
}

func foldRune(b *strings.Builder, r rune) {
	switch {
	case r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
		b.WriteRune(r)
		return
	case strings.ContainsRune(apostrophes, r) || unicode.Is(unicode.Mn, r):
		return
	case r < 0x80 || !unicode.IsLetter(r) && !unicode.IsNumber(r):
		b.WriteByte(' ')
		return
	}
	if s, ok := translit[r]; ok {
		b.WriteString(s)
		return
	}
	for _, c := range norm.NFKD.String(string(r)) {
		c = unicode.ToLower(c)
		switch s, ok := translit[c]; {
		case c >= 'a' && c <= 'z' || c >= '0' && c <= '9':
			b.WriteRune(c)
		case unicode.Is(unicode.Mn, c):
		case ok:
			b.WriteString(s)
		default:
			b.WriteByte(' ')
		}
	}
}

// apostrophes join the letters around them.
const apostrophes = "'’ʼ"

// translit spells letters that do not decompose into ASCII. Keys are lower
// case; a letter with a diacritic is listed only when its transliteration
// differs from its base letter's (й, ї).
var translit = map[rune]string{
	// Latin letters of their own.
	'ß': "ss", 'æ': "ae", 'œ': "oe", 'ø': "o", 'đ': "d", 'ð': "d", 'þ': "th",
	'ł': "l", 'ı': "i", 'ħ': "h", 'ŧ': "t", 'ŋ': "n", 'ĸ': "k", 'ſ': "s",
	'ŀ': "l", 'ƒ': "f", 'ə': "e",
	// Greek (ELOT 743, simplified).
	'α': "a", 'β': "v", 'γ': "g", 'δ': "d", 'ε': "e", 'ζ': "z", 'η': "i",
	'θ': "th", 'ι': "i", 'κ': "k", 'λ': "l", 'μ': "m", 'ν': "n", 'ξ': "x",
	'ο': "o", 'π': "p", 'ρ': "r", 'σ': "s", 'ς': "s", 'τ': "t", 'υ': "y",
	'φ': "f", 'χ': "ch", 'ψ': "ps", 'ω': "o",
	// Cyrillic: Russian (ICAO Doc 9303), with the Ukrainian, Belarusian,
	// Serbian and Macedonian letters.
	'а': "a", 'б': "b", 'в': "v", 'г': "g", 'д': "d", 'е': "e", 'ж': "zh",
	'з': "z", 'и': "i", 'й': "i", 'к': "k", 'л': "l", 'м': "m", 'н': "n",
	'о': "o", 'п': "p", 'р': "r", 'с': "s", 'т': "t", 'у': "u", 'ф': "f",
	'х': "kh", 'ц': "ts", 'ч': "ch", 'ш': "sh", 'щ': "shch", 'ъ': "", 'ы': "y",
	'ь': "", 'э': "e", 'ю': "iu", 'я': "ia",
	'є': "ie", 'і': "i", 'ї': "i", 'ґ': "g",
	'ђ': "dj", 'ј': "j", 'љ': "lj", 'њ': "nj", 'ћ': "c", 'џ': "dz", 'ѕ': "dz",
}
