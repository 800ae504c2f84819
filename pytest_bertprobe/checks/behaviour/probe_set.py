"""The behavioural probe set: anchor / paraphrase / distractor triplets in eight languages, and masked-LM sentences.

Data the plugin ships (docs/DESIGN.md §2, "What a green audit means" in the README). Each triplet's paraphrase
says what the anchor says in other words (it shares few words with it); its distractor keeps the anchor's
frame and most of its words but changes the topic. A bag of words ranks the distractor first in every
triplet (`tests/test_behaviour_probes.py` proves it), so only a model that reads meaning ranks the paraphrase
first. The seed's five sentences (开心, 快乐, 难过, 天气, 今天会有大大的台风吗?) are Chinese anchors and paraphrases.
"""

from __future__ import annotations

from typing import NamedTuple


class Triplet(NamedTuple):
    """An anchor, a sentence that means the same in other words, and one that shares its words but not its meaning."""

    language: str
    anchor: str
    paraphrase: str
    distractor: str


TRIPLETS: tuple[Triplet, ...] = (
    Triplet("en", "She plays the violin beautifully.", "Her performance on the fiddle is lovely.", "She plays the lottery every week."),
    Triplet("en", "My doctor told me to eat less sugar.", "The physician advised cutting down on sweets.", "My boss told me to buy a new car."),
    Triplet("en", "I am looking for a cheap hotel near the beach.", "Where can I find affordable lodging by the sea?", "I am looking for a cheap gift near the station."),
    Triplet("en", "Can you recommend a good book?", "What novel should I read next?", "Can you recommend a good plumber?"),
    Triplet("en", "Turn off the lights when you leave.", "Switch the lamps off on your way out.", "Turn off the highway when you leave the city."),
    Triplet("en", "My phone battery died.", "My mobile ran out of charge.", "My phone number changed."),
    Triplet("en", "We adopted a puppy last week.", "Our family got a young dog recently.", "We adopted a new budget last week."),
    Triplet("en", "I need to see a dentist.", "My tooth hurts and must be checked.", "I need to see a movie."),
    Triplet("zh", "开心", "快乐", "开心果"),
    Triplet("zh", "难过", "伤心", "难关"),
    Triplet("zh", "天气", "刮风下雨", "天才"),
    Triplet("zh", "今天会有大大的台风吗?", "今日是否有强烈风暴来袭?", "今天会有大大的蛋糕吗?"),
    Triplet("de", "Ich habe meinen Schlüssel verloren.", "Meine Wohnungsschlüssel sind weg.", "Ich habe meinen Job verloren."),
    Triplet("de", "Das Essen in diesem Restaurant ist ausgezeichnet.", "Hier schmeckt es wirklich hervorragend.", "Das Parken vor diesem Restaurant ist verboten."),
    Triplet("de", "Wie spät ist es jetzt?", "Kannst du mir die Uhrzeit sagen?", "Wie teuer ist es jetzt?"),
    Triplet("es", "¿Dónde está la estación de tren?", "¿Por dónde se va a la terminal ferroviaria?", "¿Dónde está la estación de policía?"),
    Triplet("es", "Mi hermano cocina muy bien.", "Él prepara comidas deliciosas.", "Mi hermano canta muy bien."),
    Triplet("es", "Hace mucho frío esta mañana.", "Hoy amaneció helado.", "Tengo mucho trabajo esta mañana."),
    Triplet("fr", "Je suis très fatigué ce soir.", "J'ai besoin de dormir, je suis épuisé.", "Je suis au cinéma ce soir."),
    Triplet("fr", "Le chat dort sur le canapé.", "Mon matou fait la sieste dans le salon.", "Le livre est sur le canapé."),
    Triplet("fr", "Combien coûte ce billet d'avion ?", "Quel est le prix du vol ?", "Combien coûte ce bouquet de fleurs ?"),
    Triplet("ru", "Сегодня идёт сильный дождь.", "На улице льёт как из ведра.", "Сегодня идёт интересный фильм."),
    Triplet("ru", "Я забыл свой телефон дома.", "Мой мобильник остался в квартире.", "Я чинил свой велосипед дома."),
    Triplet("ru", "Эта книга очень интересная.", "Этот роман невозможно отложить.", "Эта собака очень большая."),
    Triplet("ja", "今日はとても暑いです。", "外は猛暑で汗が止まらない。", "今日はとても忙しいです。"),
    Triplet("ja", "駅はどこですか？", "電車の乗り場を探しています。", "傘はどこですか？"),
    Triplet("ja", "この映画は面白かった。", "あの作品、すごく楽しめたよ。", "この問題は難しかった。"),
    Triplet("ar", "أين أقرب مستشفى؟", "أحتاج إلى طبيب بسرعة.", "أين أقرب مطعم؟"),
    Triplet("ar", "الطقس جميل اليوم.", "الشمس مشرقة والجو دافئ.", "العرض جميل اليوم."),
    Triplet("ar", "أحب القراءة في المساء.", "أستمتع بالكتب قبل النوم.", "أحب الركض في المساء."),
)  # fmt: skip

LANGUAGES: tuple[str, ...] = tuple(dict.fromkeys(triplet.language for triplet in TRIPLETS))

# Sentences for masked-token recovery, per language: its triplets' anchors and two more, one in the register of
# technical documentation (what small models trained on manuals know), one everyday request.
_MORE_MASKED: dict[str, tuple[str, str]] = {
    "en": ("The function returns a new list of strings.", "Please close the door when you leave the room."),
    "zh": ("这个函数返回一个新的字符串列表。", "离开房间时请把门关上。"),
    "de": ("Die Funktion gibt eine neue Liste zurück.", "Bitte schließe die Tür, wenn du den Raum verlässt."),
    "es": ("La función devuelve una nueva lista de cadenas.", "Por favor, cierra la puerta cuando salgas de la habitación."),
    "fr": ("La fonction renvoie une nouvelle liste de chaînes.", "Ferme la porte quand tu quittes la pièce, s'il te plaît."),
    "ru": ("Функция возвращает новый список строк.", "Пожалуйста, закрой дверь, когда выходишь из комнаты."),
    "ja": ("この関数は新しい文字列のリストを返します。", "部屋を出るときはドアを閉めてください。"),
    "ar": ("تعيد الدالة قائمة جديدة من السلاسل النصية.", "من فضلك أغلق الباب عندما تغادر الغرفة."),
}  # fmt: skip
MASKED_SENTENCES: dict[str, tuple[str, ...]] = {
    language: (*(triplet.anchor for triplet in TRIPLETS if triplet.language == language), *_MORE_MASKED[language])
    for language in LANGUAGES
}


def triplet_sentences(triplets: tuple[Triplet, ...] = TRIPLETS) -> dict[str, list[str]]:
    """Every sentence of the triplets, per language."""
    by_language: dict[str, list[str]] = {}
    for triplet in triplets:
        by_language.setdefault(triplet.language, []).extend(triplet[1:])
    return by_language
