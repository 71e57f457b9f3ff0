"""GET /: the web page (plain HTML + JS over the public API; no auth needed to load it), and the CJK font it ships."""
from __future__ import annotations

from functools import cache
from pathlib import Path

import noto_cjk_sans_jp_regular
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

router = APIRouter(tags=["web"])
PAGE = Path(__file__).resolve().parents[1] / "web" / "index.html"
FONT = Path(str(noto_cjk_sans_jp_regular.FONT_PATH))  # Noto Sans CJK JP (SIL OFL), 16 MB: loaded for CJK text only
FONT_MAX_AGE_S = 7 * 86_400


@cache
def page() -> str:
    return PAGE.read_text(encoding="utf-8")


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def index() -> HTMLResponse:
    return HTMLResponse(page())


@cache
def font_etag() -> str:
    stat = FONT.stat()
    return f'"{stat.st_size:x}-{int(stat.st_mtime):x}"'


@router.get("/web/fonts/noto-sans-cjk-jp.otf", include_in_schema=False)
async def cjk_font(request: Request) -> Response:
    """The font the page's `@font-face` names for CJK text, so a word renders without a system CJK font; cached a
    week by the browser, then revalidated (304)."""
    headers = {"Cache-Control": f"public, max-age={FONT_MAX_AGE_S}", "ETag": font_etag()}
    if request.headers.get("if-none-match") == font_etag():
        return Response(status_code=304, headers=headers)
    return FileResponse(FONT, media_type="font/otf", headers=headers)
