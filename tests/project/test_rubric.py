"""rubric.toml, the one source of the points: it adds up, and the tests, the book, the test files'
docstrings and the generated answer sheets and rubric pages agree with it (tools/rubric.py)."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tools import rubric

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def parts():
    return rubric.load()


def test_the_rubric_adds_up_to_the_assignments_points(parts):
    assert [(p.number, p.points, p.bonus) for p in parts] == [(1, 45, 0), (2, 35, 8), (3, 20, 0)]
    for q in rubric.questions(parts):
        assert q.code + q.hand == q.points, q.number
        assert all(item.criterion and item.points > 0 for item in q.items), q.number
    hand = [q for q in rubric.questions(parts) if q.hand]
    assert hand and all(q.items for q in hand)


def test_every_question_agrees_with_the_points_of_its_tests(parts):
    assert rubric.check_tests(parts) == []


def test_changing_one_tests_points_fails_the_check(parts, tmp_path):
    """A copy of the tests where one test of 1.1 is worth 5 instead of 4: the check names 1.1 and the test."""
    for name in ("grader", "tests/graded", "tests/hidden"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pytest.ini", "tests/__init__.py"):
        shutil.copyfile(ROOT / name, tmp_path / name)
    graded = tmp_path / "tests" / "graded" / "test_part1.py"
    text = graded.read_text()
    assert text.count('@pytest.mark.points(4, question="1.1")') == 1
    graded.write_text(text.replace('@pytest.mark.points(4, question="1.1")', '@pytest.mark.points(5, question="1.1")'))
    problems = rubric.check_tests(parts, tmp_path)
    assert len(problems) == 1, problems
    assert problems[0].startswith("question 1.1: rubric.toml gives code 4, the tests of tests/graded give 5: ")
    assert "test_part1.py::" in problems[0]


def test_a_rubric_that_does_not_add_up_is_refused_in_one_line(tmp_path):
    text = (ROOT / "rubric.toml").read_text()
    broken = tmp_path / "rubric.toml"
    broken.write_text(text.replace("points = 5\ncode = 2\n", "points = 6\ncode = 2\n", 1))  # 1.3
    with pytest.raises(rubric.RubricError, match=r"^rubric.toml: question '1.3': points 6 != code 2 \+ items 3$"):
        rubric.load(broken)
    broken.write_text(text.replace("bonus = 8\n", "bonus = 7\n", 1))
    with pytest.raises(rubric.RubricError, match=r"part 2: its questions add up to 35 points \+ 8 bonus, not 35 \+ 7"):
        rubric.load(broken)


def test_the_book_and_the_docstrings_agree_with_the_rubric(parts):
    assert rubric.check_book(parts) == []
    assert rubric.check_docstrings(parts) == []
    assert rubric.caption(parts[1]) == "Part 2 (35 points + 8 bonus)"
    assert rubric.intro_points(parts[0]) == "1.1–1.6 (45 points)"


def test_a_wrong_caption_or_split_is_found(parts, tmp_path):
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "_toc.yml").write_text((ROOT / "book/_toc.yml").read_text().replace("Part 3 (20 points)", "Part 3 (21 points)"))
    (tmp_path / "book" / "intro.md").write_text((ROOT / "book/intro.md").read_text().replace("1.1–1.6 (45 points)", "1.1–1.6 (44 points)"))
    problems = rubric.check_book(parts, tmp_path)
    assert len(problems) == 2 and "Part 3 (20 points)" in problems[0] and "Part 1's row" in problems[1]
    shutil.copytree(ROOT / "tests" / "graded", tmp_path / "tests" / "graded")
    path = tmp_path / "tests" / "graded" / "test_part1.py"
    path.write_text(path.read_text().replace("| 1.5 LSTM gates | 2:", "| 1.5 LSTM gates | 3:"))
    assert rubric.check_docstrings(parts, tmp_path) == [
        "question 1.5: test_part1.py's docstring splits it 3 + 3, rubric.toml 2 + 3"]


def test_the_generated_files_are_up_to_date(parts):
    assert rubric.check_generated(parts) == []


def test_the_answer_sheets_have_a_section_per_hand_graded_question(parts):
    import json
    for part in parts:
        sheet = json.loads((ROOT / f"book/answers/part{part.number}.ipynb").read_text())
        headings = [re.match(r"## Question (\S+(?: \([a-z]\))?):", "".join(c["source"]))
                    for c in sheet["cells"]]
        numbers = [m[1] for m in headings if m]
        assert numbers == [q.number for q in part.questions if q.hand]
        for i, cell in enumerate(sheet["cells"]):
            if headings[i]:
                assert sheet["cells"][i + 1]["source"] == [] and cell["cell_type"] == "markdown"


def test_the_outline_lists_every_hand_graded_point(parts):
    text = rubric.outline(parts)
    assert text.count("\n## ") == sum(1 for q in rubric.questions(parts) if q.hand)
    items = [float(x) for x in re.findall(r"^- \+([\d.]+): ", text, re.M)]
    assert sum(items) == sum(q.hand for q in rubric.questions(parts)) == 53


def test_the_student_edition_keeps_the_points_and_drops_the_criteria(parts):
    from tools.release import strip_markdown
    for part in parts:
        text, removed = strip_markdown(rubric.rubric_page(part))
        assert len(removed) == 1
        for q in part.questions:
            assert f"| {q.number} {q.title}" in text
            for item in q.items:
                assert item.criterion not in text and item.criterion in removed[0]
