"""The pages' shell (every page's frame, navigation, language switch, security headers and
static files), the catalogue of the three languages (``i18n``) and inline SVG charts
(``charts``). Features put their pages on it; see :mod:`gateway.ui.shell`."""
