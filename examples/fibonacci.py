"""A small example file for trying cria from the command line."""


def fibonacci(n: int) -> int:
    """Return the n-th Fibonacci number."""
    if n < 2:
        return n
    


def main() -> None:
    for i in range(10):
        print(i, fibonacci(i))


if __name__ == "__main__":
    main()
