package whisper

import "strings"

// languageCode returns the ISO 639-1 code for the language a whisper server
// reports. OpenAI reports English names ("english"); whisper.cpp and others
// may report codes already. An unknown name falls back to the requested
// language's primary subtag, or is returned lowercased when none was asked.
func languageCode(reported, requested string) string {
	name := strings.ToLower(strings.TrimSpace(reported))
	if code, ok := languageCodes[name]; ok {
		return code
	}
	if len(name) == 2 || len(name) == 3 {
		return name
	}
	if requested != "" {
		return strings.ToLower(strings.SplitN(strings.ReplaceAll(requested, "_", "-"), "-", 2)[0])
	}
	return name
}

// languageCodes maps the language names of whisper's tokenizer (openai/whisper
// whisper/tokenizer.py, LANGUAGES) to their codes.
var languageCodes = map[string]string{
	"english": "en", "chinese": "zh", "german": "de", "spanish": "es", "russian": "ru",
	"korean": "ko", "french": "fr", "japanese": "ja", "portuguese": "pt", "turkish": "tr",
	"polish": "pl", "catalan": "ca", "dutch": "nl", "arabic": "ar", "swedish": "sv",
	"italian": "it", "indonesian": "id", "hindi": "hi", "finnish": "fi", "vietnamese": "vi",
	"hebrew": "he", "ukrainian": "uk", "greek": "el", "malay": "ms", "czech": "cs",
	"romanian": "ro", "danish": "da", "hungarian": "hu", "tamil": "ta", "norwegian": "no",
	"thai": "th", "urdu": "ur", "croatian": "hr", "bulgarian": "bg", "lithuanian": "lt",
	"latin": "la", "maori": "mi", "malayalam": "ml", "welsh": "cy", "slovak": "sk",
	"telugu": "te", "persian": "fa", "latvian": "lv", "bengali": "bn", "serbian": "sr",
	"azerbaijani": "az", "slovenian": "sl", "kannada": "kn", "estonian": "et",
	"macedonian": "mk", "breton": "br", "basque": "eu", "icelandic": "is",
	"armenian": "hy", "nepali": "ne", "mongolian": "mn", "bosnian": "bs", "kazakh": "kk",
	"albanian": "sq", "swahili": "sw", "galician": "gl", "marathi": "mr", "punjabi": "pa",
	"sinhala": "si", "khmer": "km", "shona": "sn", "yoruba": "yo", "somali": "so",
	"afrikaans": "af", "occitan": "oc", "georgian": "ka", "belarusian": "be", "tajik": "tg",
	"sindhi": "sd", "gujarati": "gu", "amharic": "am", "yiddish": "yi", "lao": "lo",
	"uzbek": "uz", "faroese": "fo", "haitian creole": "ht", "pashto": "ps",
	"turkmen": "tk", "nynorsk": "nn", "maltese": "mt", "sanskrit": "sa",
	"luxembourgish": "lb", "myanmar": "my", "tibetan": "bo", "tagalog": "tl",
	"malagasy": "mg", "assamese": "as", "tatar": "tt", "hawaiian": "haw",
	"lingala": "ln", "hausa": "ha", "bashkir": "ba", "javanese": "jw", "sundanese": "su",
	"cantonese": "yue",
}
