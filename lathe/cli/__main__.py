from lathe.cli import main

main()
