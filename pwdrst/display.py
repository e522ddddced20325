"""How things are shown to people: masked addresses."""


def mask_address(address: str) -> str:
    """Show enough of an address to recognise it, not enough to harvest it: ja***@private.example."""
    local, at, domain = (address or "").partition("@")
    if not at:
        return "***"
    visible = local[:2] if len(local) > 3 else local[:1]
    return f"{visible}***@{domain}"


def init_app(app) -> None:
    """Make the helpers available to templates."""
    app.jinja_env.filters["mask_address"] = mask_address
