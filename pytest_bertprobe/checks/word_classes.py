"""Words of a known class, in several languages: their rows in a trained embedding lie much closer to each other
than random tokens' rows do (digits with digits, months with months). `vocabulary_rows` reads them.

A class counts for a vocabulary where at least five of its words are single tokens. Words that are also common
words of another language (French "six", "sept"; Spanish "once") are left out, so a class means one thing in any
vocabulary. Calibrated on all-MiniLM-L6-v2 and all-mpnet-base-v2 (docs/DESIGN.md §3).
"""

from __future__ import annotations

WORD_CLASSES: dict[str, tuple[str, ...]] = {
    "digits": tuple("0123456789"),
    "en_numbers": ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
                   "twenty", "hundred", "thousand"),
    "en_months": ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
                  "november", "december"),
    "en_weekdays": ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"),
    "en_function_words": ("the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "with", "was", "on", "by",
                          "at", "from", "or", "an", "be", "this", "which"),
    "en_colours": ("red", "green", "blue", "yellow", "black", "white", "brown", "orange", "purple", "pink", "gray"),
    "en_family": ("mother", "father", "brother", "sister", "son", "daughter", "wife", "husband", "uncle", "aunt"),
    "fr_numbers": ("deux", "trois", "quatre", "cinq", "huit", "neuf", "dix", "onze", "douze", "vingt"),
    "fr_months": ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre",
                  "novembre", "décembre"),
    "de_numbers": ("zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun", "zehn", "zwölf", "zwanzig"),
    "es_numbers": ("dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho", "nueve", "diez", "doce", "veinte"),
    "es_months": ("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre", "octubre",
                  "noviembre", "diciembre"),
    "ru_numbers": ("один", "два", "три", "четыре", "пять", "шесть", "семь", "восемь", "девять", "десять"),
    "ru_months": ("январь", "февраль", "март", "апрель", "май", "июнь", "июль", "август", "сентябрь", "октябрь",
                  "ноябрь", "декабрь"),
    "zh_numerals": tuple("一二三四五六七八九十百千万"),
    "arabic_indic_digits": tuple("٠١٢٣٤٥٦٧٨٩"),
    "devanagari_digits": tuple("०१२३४५६७८९"),
}  # fmt: skip
