from pwdrst import create_app

app = create_app()
