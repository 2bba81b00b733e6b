from onnxvec.cli import main

main()
