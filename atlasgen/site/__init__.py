"""Static site renderer: reads stage artifacts, writes the atlas folder.

Never imports torch; see ``build.render_site``.
"""

from atlasgen.site.build import SiteSummary, render_site

__all__ = ["SiteSummary", "render_site"]
