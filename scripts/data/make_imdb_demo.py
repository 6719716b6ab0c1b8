"""Write the offline IMDb demo: OUT/data/aclImdb (synthetic reviews) and OUT/model (a random tiny openai-gpt).

    .venv/bin/python scripts/data/make_imdb_demo.py runs/imdb-demo
    .venv/bin/ms-gpt finetune-imdb --model runs/imdb-demo/model --data-dir runs/imdb-demo/data --out runs/imdb \
        --subset 1 --epochs 2 --max-seq-len 64 --batch-size 8 --learning-rate 1e-3 --buckets 16,32,64
"""
import argparse
import json

from ms_gpt.testing import write_offline_demo

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="the folder to write (an aclImdb-style tree)")
    p.add_argument("--train", type=int, default=1000, help="training reviews (default: 1000)")
    p.add_argument("--test", type=int, default=200, help="test reviews (default: 200)")
    p.add_argument("--seed", type=int, default=0, help="the reviews' seed (default: 0)")
    a = p.parse_args()
    made = write_offline_demo(a.out, a.train, a.test, a.seed)
    print(json.dumps({"data": str(made["data"]), "model": str(made["model"])}))
