"""What every page's template gets: the shared context and the breadcrumb.

``site`` is the renderer's ``atlasgen.site.pages.Site`` (its settings shared by every page).
"""

from __future__ import annotations

from typing import Any

from atlasgen.site import urls


def crumbs(site: Any, *items: tuple[str, str | None]) -> list[dict]:
    """Breadcrumb: atlas > model > ...; the last item (href None) is the current page."""
    out = [{"label": "atlas", "href": urls.home()}]
    out += [{"label": label, "href": href} for label, href in items]
    return out


def base_context(site: Any, path: str, page_title: str, crumb_list: list[dict], **extra) -> dict:
    ctx = {
        "root": urls.root_prefix(path),
        "title": site.title,
        "page_title": page_title,
        "date": site.date,
        "version": site.version,
        "crumbs": crumb_list,
        "scripts": [],
        "body_class": "",
        "description": "",
        "og_url": site.permalink(path) if site.base_url else "",
        "og_image": "",
    }
    ctx.update(extra)
    return ctx


def citation_pins(site: Any) -> list[str]:
    """What a citation pins besides the SAE: the model weights and the dataset, where the site knows them."""
    pins = []
    if site.model_sha256:
        pins.append(f"model weights sha256:{site.model_sha256}")
    if site.dataset_identity or site.dataset_sha256:
        pins.append(
            f"dataset {site.dataset_identity}, {site.dataset_images} images, "
            f"image list sha256:{site.dataset_sha256}"
        )
    return pins
