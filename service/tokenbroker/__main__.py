from tokenbroker.cli import main

main()
