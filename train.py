"""Train or fine-tune a VidTok tokenizer: the checkout's entry to ``python -m vidtok.train``
(the same Hydra app and configs).

python train.py experiment=demo                       # small tokenizer on the bundled clips (CPU)
accelerate launch train.py regularizer=fsq compression=488 data.path=/videos val_data.path=/val
python train.py -m regularizer=kl,fsq compression=488,444 ...   # a local sweep
"""

from vidtok.train import main

if __name__ == "__main__":
    main()
