"""The weighted 7-point checklist (NICE NG12): the rule's table, reading answers from a request
(the HTTP adapter's :mod:`functions.answers`), and apply() on results.

Pure functions on the contract's types: no model, no TensorFlow.
"""

from __future__ import annotations

import pytest

from fakes import LAMBDA_CONTEXT, function_url_event
from functions.answers import AnswerError, parse_answers
from skinscan import checklist, triage
from skinscan.checklist import apply
from skinscan.contract import ChecklistSummary, ModelInfo, Prediction, Result, TopCondition

DISCLAIMER = triage.DISCLAIMER
MODEL = ModelInfo(name="fake", version="1", sha256="0" * 64, backend="fake")


def photo_result(level: str = "monitor") -> Result:
    """A recognised photo's result at ``monitor`` (a likely mole) or ``urgent`` (50% melanoma)."""
    from skinscan.labels import LABELS

    probabilities = {label: 0.01 for label in LABELS}
    probabilities.update({"Melanocytic nevus": 0.9} if level == "monitor"
                         else {"Melanocytic nevus": 0.4, "Melanoma": 0.5})
    recommendation = triage.recommend(probabilities, triage.DEFAULT_THRESHOLDS)
    assert recommendation.level == level
    return Result(status="ok", predictions=(Prediction("Melanocytic nevus", 0.9),),
                  recommendation=recommendation, top_condition=TopCondition("Melanocytic nevus", "A mole."),
                  model=MODEL)


def not_recognised() -> Result:
    return Result(status="not_recognised", predictions=(), recommendation=triage.retake("too_blurry"), model=MODEL)


def summary(**fields) -> ChecklistSummary:
    return ChecklistSummary(**{**fields, "yes": tuple(fields["yes"]), "unsure": tuple(fields["unsure"])})


# -- the table ---------------------------------------------------------------------------------------
ALL_YES = {f: "yes" for f in checklist.FIELDS}


@pytest.mark.parametrize("answers, score, level", [
    ({f: "no" for f in checklist.FIELDS}, 0, None),                       # score 0
    ({"inflamed": "yes", "oozing": "yes"}, 2, None),                      # 2 minor points: photo stands
    ({"changed_size": "yes"}, 2, "soon"),                                 # a major feature: at least soon
    ({"irregular_colour": "yes", "sensation": "yes"}, 3, "urgent"),       # score 3
    ({"diameter_7mm": "yes", "inflamed": "yes", "oozing": "yes"}, 3, "urgent"),  # 3 from minors
    (ALL_YES, 10, "urgent"),                                              # the maximum
    ({f: "unsure" for f in checklist.FIELDS}, 0, None),                   # unsure counts 0
])
def test_the_rule_table(answers, score, level):
    scored = parse_answers(answers).summary()
    assert scored.score == score and scored.level == level
    assert scored.answered == len(answers)


def test_points_and_fields_are_the_guideline():
    assert {f.field: f.points for f in checklist.FEATURES} == {
        "changed_size": 2, "irregular_shape": 2, "irregular_colour": 2,
        "diameter_7mm": 1, "inflamed": 1, "oozing": 1, "sensation": 1}
    assert sum(f.points for f in checklist.FEATURES) == 10


def test_unsure_is_reported_but_scores_nothing():
    scored = parse_answers({"changed_size": "Unsure", "oozing": "YES", "inflamed": "no"}).summary()
    assert scored == summary(score=1, answered=3, yes=["oozing"], unsure=["changed_size"], level=None)


# -- parsing -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("fields, bad", [
    ({"changed_size": "maybe"}, "changed_size"),
    ({"oozing": "1"}, "oozing"),
    ({"changed-size": "yes"}, "changed-size"),          # close to a known field
    ({"irregular_color": "no"}, "irregular_color"),     # US spelling
    ({"Diameter7mm": "yes"}, "Diameter7mm"),
    ({"bleeding": "yes"}, "bleeding"),                  # answer-like value, unknown name
    ({"itchy": "UNSURE"}, "itchy"),
])
def test_bad_answers_name_the_field(fields, bad):
    with pytest.raises(AnswerError) as caught:
        parse_answers(fields)
    assert caught.value.field == bad and bad in caught.value.message


def test_other_fields_empty_values_and_image_are_not_answers():
    assert not parse_answers({})
    assert not parse_answers(None)
    assert not parse_answers({"image": "yes", "lang": "en", "changed_size": ""})
    assert parse_answers([("oozing", "yes"), ("oozing", "Yes")]).values == {"oozing": "yes"}
    with pytest.raises(AnswerError):
        parse_answers([("oozing", "yes"), ("oozing", "no")])


def test_a_werkzeug_multidict_is_read_with_every_value():
    from werkzeug.datastructures import MultiDict

    with pytest.raises(AnswerError) as caught:
        parse_answers(MultiDict([("sensation", "yes"), ("sensation", "maybe")]))
    assert caught.value.field == "sensation"


# -- apply() -----------------------------------------------------------------------------------------
def test_no_answers_leave_the_result_exactly_as_it_was():
    result = photo_result()
    assert apply(result, parse_answers({})) == result
    assert apply(result, None) == result


def test_answers_that_do_not_reach_a_level_add_the_summary_only():
    result = photo_result()
    out = apply(result, parse_answers({"inflamed": "yes", "changed_size": "no"}))
    assert out.recommendation == result.recommendation
    assert out.checklist == summary(score=1, answered=2, yes=["inflamed"], unsure=[], level=None)


def test_urgent_answers_raise_a_harmless_looking_photo():
    result = photo_result("monitor")
    before = photo_result("monitor")
    out = apply(result, parse_answers({"changed_size": "yes", "irregular_colour": "yes"}))
    assert result == before, "apply() must not modify its input"
    rec = out.recommendation
    assert rec.level == "urgent" and rec.see_doctor is True
    assert "within 2 weeks" in rec.message
    assert "because it has changed in size and has uneven colour" in rec.message
    assert rec.photo_level == "monitor" and rec.raised_by == "checklist"
    assert out.predictions == result.predictions
    assert out.checklist is not None and out.checklist.level == "urgent" and out.checklist.score == 4


def test_a_major_feature_raises_to_soon():
    out = apply(photo_result("monitor"), parse_answers({"irregular_shape": "yes"}))
    assert out.recommendation.level == "soon" and out.recommendation.see_doctor
    assert "irregular shape or edge" in out.recommendation.message


def test_answers_never_lower_the_level():
    result = photo_result("urgent")
    for answers in ({f: "no" for f in checklist.FIELDS}, {"changed_size": "yes"}, ALL_YES):
        out = apply(result, parse_answers(answers))
        assert out.recommendation == result.recommendation  # urgent stays, message unchanged
        assert "within 2 weeks" in out.recommendation.message


def test_not_recognised_with_urgent_answers():
    result = not_recognised()
    out = apply(result, parse_answers({"changed_size": "yes", "oozing": "yes", "inflamed": "unsure"}))
    rec = out.recommendation
    assert out.status == "not_recognised" and out.predictions == ()
    assert rec.level == "urgent" and rec.see_doctor is True
    assert rec.message.startswith("Your answers alone are reason to see a doctor")
    assert "within 2 weeks" in rec.message
    assert "the photo is out of focus" in rec.message and "sharp close-up" in rec.message  # retake tips
    assert rec.reason == "too_blurry"
    assert out.checklist == summary(score=3, answered=3, yes=["changed_size", "oozing"], unsure=["inflamed"],
                                    level="urgent")


def test_not_recognised_with_soon_answers_and_with_no_reason():
    out = apply(not_recognised(), parse_answers({"irregular_colour": "yes"}))
    assert out.recommendation.level == "soon"
    assert "answers alone are reason to book an appointment" in out.recommendation.message
    calm = apply(not_recognised(), parse_answers({"irregular_colour": "no"}))
    assert calm.recommendation.level == "retake" and calm.checklist is not None and calm.checklist.level is None


def test_classifier_applies_the_rule(monkeypatch):
    """classify_bytes(data, answers) = apply(classify_bytes(data), answers), through a stub."""
    from skinscan import classifier

    stub = classifier.Classifier.__new__(classifier.Classifier)
    stub.preprocessing = type("P", (), {"size": 32})()
    monkeypatch.setattr(classifier, "decode", lambda data, draft_size: data)
    monkeypatch.setattr(classifier.Classifier, "classify_image", lambda self, image, tr=None: photo_result())
    assert stub.classify_bytes(b"x") == photo_result()
    raised = stub.classify_bytes(b"x", parse_answers({"changed_size": "yes", "oozing": "yes"}))
    assert raised.recommendation.level == "urgent"


# -- the HTTP contract, through functions-framework's test client (fake backend) -----------------------
@pytest.fixture
def api(fake_service):
    from conftest import classify_app

    return classify_app().test_client()


def multipart(client, photo: bytes, fields: dict | None = None):
    import io

    return client.post("/", data={"image": (io.BytesIO(photo), "spot.jpg", "image/jpeg"), **(fields or {})},
                       content_type="multipart/form-data")


def test_api_without_answers_is_exactly_todays_response(api, fake_service, photo):
    expected = fake_service.classify_bytes(photo)  # the core without answers: today's result
    for response in (multipart(api, photo), api.post("/", data=photo, content_type="image/jpeg"),
                     multipart(api, photo, {"lang": "en"})):
        assert response.status_code == 200
        assert response.get_json() == expected.to_wire() and "checklist" not in response.get_json()


def test_api_multipart_answers_raise_the_level(api, photo):
    response = multipart(api, photo, {"changed_size": "YES", "irregular_colour": "yes", "oozing": "no"})
    assert response.status_code == 200
    result = response.get_json()
    assert result["checklist"] == {"score": 4, "answered": 3, "yes": ["changed_size", "irregular_colour"],
                                   "unsure": [], "level": "urgent"}
    assert result["recommendation"]["level"] == "urgent" and result["recommendation"]["see_doctor"]
    assert "within 2 weeks" in result["recommendation"]["message"]
    assert result["disclaimer"] == DISCLAIMER


def test_api_raw_body_takes_answers_as_query_parameters(api, photo):
    response = api.post("/?irregular_shape=yes&sensation=unsure", data=photo, content_type="image/jpeg")
    assert response.status_code == 200
    result = response.get_json()
    assert result["checklist"]["unsure"] == ["sensation"] and result["checklist"]["level"] == "soon"
    assert triage.LEVELS.index(result["recommendation"]["level"]) <= triage.LEVELS.index("soon")


@pytest.mark.parametrize("how", ["multipart", "raw"])
@pytest.mark.parametrize("fields, field", [({"changed_size": "maybe"}, "changed_size"),
                                           ({"changed-size": "yes"}, "changed-size"),
                                           ({"bleeding": "no"}, "bleeding")])
def test_api_bad_answer_is_a_400_naming_the_field(api, photo, how, fields, field):
    if how == "multipart":
        response = multipart(api, photo, fields)
    else:
        from urllib.parse import urlencode

        response = api.post("/?" + urlencode(fields), data=photo, content_type="image/jpeg")
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "bad_answer" and error["field"] == field and field in error["message"]


def test_get_info_lists_the_checklist_fields(api):
    info = api.get("/").get_json()
    assert info["checklist"]["fields"]["changed_size"] == 2 and info["checklist"]["urgent_score"] == 3


# -- the client's copies agree with the core ------------------------------------------------------------
def test_the_client_asks_the_cores_questions_and_keeps_its_constants():
    import skinscan_client
    from functions.http_api import MAX_UPLOAD_BYTES
    from skinscan_client import questions

    assert questions.FIELDS == checklist.FIELDS  # same fields, same order as the rule
    assert tuple(questions.ANSWER_VALUES) == checklist.VALUES
    assert skinscan_client.MAX_UPLOAD_BYTES is MAX_UPLOAD_BYTES  # one constant, the contract's
    assert skinscan_client.DISCLAIMER is triage.DISCLAIMER
    assert set(questions.RAISED_TO) == {"urgent", "soon"}
    assert skinscan_client.percent(0.125) == "13%" and skinscan_client.percent(0.004) == "<1%"


def test_lambda_raw_body_with_answers_in_the_query_string(fixture_model, use_model, photo):
    import json

    from functions.lambda_handler import handler

    use_model(fixture_model)
    event = function_url_event(photo, "image/jpeg", query="changed_size=yes&oozing=yes&sensation=yes")
    response = handler(event, LAMBDA_CONTEXT)
    assert response["statusCode"] == 200
    assert json.loads(response["body"])["checklist"]["level"] == "urgent"
    bad = handler({**event, "rawQueryString": "changed_size=perhaps"}, LAMBDA_CONTEXT)
    assert bad["statusCode"] == 400 and json.loads(bad["body"])["error"]["field"] == "changed_size"
