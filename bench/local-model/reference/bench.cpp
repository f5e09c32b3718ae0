// llama.cpp's own speed on a GGUF, measured as llama.cpp's `llama-bench` measures it, for
// bench/local-model/compare.sh. llama-cpp-sys-2 ships llama.cpp's libraries but not
// llama-bench's source, so this small driver repeats llama-bench's two tests (its `pp` and `tg`,
// default settings) on the C API of the very llama.cpp Natter's engine is built from:
//
// - pp: P tokens (BOS, then random ids) decoded as one batch (n_batch 2048, n_ubatch 512) into an
//   empty cache of n_ctx = P;
// - tg: G single-token decodes (BOS, then random ids) into an empty cache of n_ctx = G, each
//   followed by llama_synchronize;
// - f16 KV cache, flash attention `auto`, memory-mapped model, a ggml threadpool of `--threads`
//   threads (poll 50) attached to the context, one warm-up (a full pp / one tg step), then
//   `--repeats` timed runs each starting from an empty cache.
//
//   natter-llama-reference --model M.gguf [--threads N] [--prompt-tokens P] [--gen-tokens G]
//       [--repeats R] [--system-info]
//
// Prints one JSON line: tokens/s of each run, their median and mean (llama-bench's `avg_ts`).

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "ggml-cpu.h"
#include "llama.h"

namespace {

struct Args {
    std::string model;
    int threads = 2;
    int prompt_tokens = 256;
    int gen_tokens = 128;
    int repeats = 3;
    bool system_info = false;
};

[[noreturn]] void usage(const char *why) {
    std::fprintf(stderr,
                 "natter-llama-reference: %s\nusage: natter-llama-reference --model M.gguf [--threads N] "
                 "[--prompt-tokens P] [--gen-tokens G] [--repeats R] [--system-info]\n",
                 why);
    std::exit(2);
}

int positive(const char *name, const char *value) {
    char *end = nullptr;
    long parsed = std::strtol(value, &end, 10);
    if (end == value || *end != '\0' || parsed < 1 || parsed > 1 << 20) {
        usage((std::string(name) + " takes a positive integer, not `" + value + "`").c_str());
    }
    return static_cast<int>(parsed);
}

Args parse(int argc, char **argv) {
    Args args;
    for (int i = 1; i < argc; i++) {
        std::string flag = argv[i];
        if (flag == "--system-info") {
            args.system_info = true;
            continue;
        }
        if (i + 1 >= argc) {
            usage(("missing value after " + flag).c_str());
        }
        const char *value = argv[++i];
        if (flag == "--model") {
            args.model = value;
        } else if (flag == "--threads") {
            args.threads = positive("--threads", value);
        } else if (flag == "--prompt-tokens") {
            args.prompt_tokens = positive("--prompt-tokens", value);
        } else if (flag == "--gen-tokens") {
            args.gen_tokens = positive("--gen-tokens", value);
        } else if (flag == "--repeats") {
            args.repeats = positive("--repeats", value);
        } else {
            usage(("unknown option " + flag).c_str());
        }
    }
    if (args.model.empty()) {
        usage("--model is required");
    }
    return args;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

llama_token first_token(const llama_vocab *vocab) {
    return llama_vocab_get_add_bos(vocab) ? llama_vocab_bos(vocab) : std::rand() % llama_vocab_n_tokens(vocab);
}

// llama-bench's test_prompt.
bool run_prompt(llama_context *ctx, int n_prompt, int n_batch) {
    const llama_vocab *vocab = llama_model_get_vocab(llama_get_model(ctx));
    std::vector<llama_token> tokens(n_batch);
    for (int done = 0; done < n_prompt;) {
        int n = std::min(n_prompt - done, n_batch);
        tokens[0] = done == 0 ? first_token(vocab) : std::rand() % llama_vocab_n_tokens(vocab);
        for (int i = 1; i < n; i++) {
            tokens[i] = std::rand() % llama_vocab_n_tokens(vocab);
        }
        if (llama_decode(ctx, llama_batch_get_one(tokens.data(), n)) != 0) {
            return false;
        }
        done += n;
    }
    llama_synchronize(ctx);
    return true;
}

// llama-bench's test_gen.
bool run_gen(llama_context *ctx, int n_gen) {
    const llama_vocab *vocab = llama_model_get_vocab(llama_get_model(ctx));
    llama_token token = first_token(vocab);
    for (int i = 0; i < n_gen; i++) {
        if (llama_decode(ctx, llama_batch_get_one(&token, 1)) != 0) {
            return false;
        }
        llama_synchronize(ctx);
        token = std::rand() % llama_vocab_n_tokens(vocab);
    }
    return true;
}

struct Runs {
    std::vector<double> tok_s;
    double median() const {
        std::vector<double> sorted = tok_s;
        std::sort(sorted.begin(), sorted.end());
        // The upper median, as Natter's bench takes it.
        return sorted[sorted.size() / 2];
    }
    double mean() const {
        double sum = 0;
        for (double v : tok_s) {
            sum += v;
        }
        return sum / tok_s.size();
    }
    std::string json() const {
        std::string out = "[";
        char buf[32];
        for (size_t i = 0; i < tok_s.size(); i++) {
            std::snprintf(buf, sizeof buf, "%s%.1f", i ? "," : "", tok_s[i]);
            out += buf;
        }
        return out + "]";
    }
};

// One llama-bench test instance: a fresh context of n_ctx tokens with its threadpool, a warm-up,
// then `repeats` timed runs from an empty cache. `prompt` > 0 is a pp test, else a tg test of `gen`.
bool measure(llama_model *model, const Args &args, int prompt, int gen, Runs &runs) {
    const int n_batch = 2048;
    llama_context_params cparams = llama_context_default_params();
    cparams.n_ctx = static_cast<uint32_t>(prompt + gen);
    cparams.n_batch = n_batch;
    cparams.n_ubatch = 512;
    cparams.type_k = GGML_TYPE_F16;
    cparams.type_v = GGML_TYPE_F16;
    cparams.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_AUTO;
    cparams.n_threads = args.threads;
    cparams.n_threads_batch = args.threads;
    llama_context *ctx = llama_init_from_model(model, cparams);
    if (ctx == nullptr) {
        std::fprintf(stderr, "natter-llama-reference: cannot create a context of %d tokens\n", prompt + gen);
        return false;
    }
    ggml_threadpool_params tpp = ggml_threadpool_params_default(args.threads);
    tpp.poll = 50;
    ggml_threadpool *pool = ggml_threadpool_new(&tpp);
    if (pool == nullptr) {
        std::fprintf(stderr, "natter-llama-reference: cannot create a threadpool of %d threads\n", args.threads);
        llama_free(ctx);
        return false;
    }
    llama_attach_threadpool(ctx, pool, nullptr);
    llama_set_n_threads(ctx, args.threads, args.threads);
    bool ok = prompt > 0 ? run_prompt(ctx, prompt, n_batch) : run_gen(ctx, 1);
    for (int r = 0; ok && r < args.repeats; r++) {
        llama_memory_clear(llama_get_memory(ctx), false);
        auto start = std::chrono::steady_clock::now();
        ok = prompt > 0 ? run_prompt(ctx, prompt, n_batch) : run_gen(ctx, gen);
        runs.tok_s.push_back((prompt > 0 ? prompt : gen) / seconds_since(start));
    }
    if (!ok) {
        std::fprintf(stderr, "natter-llama-reference: llama_decode failed\n");
    }
    llama_detach_threadpool(ctx);
    ggml_threadpool_free(pool);
    llama_free(ctx);
    return ok;
}

void quiet_log(ggml_log_level, const char *, void *) {}

} // namespace

int main(int argc, char **argv) {
    Args args = parse(argc, argv);
    llama_log_set(quiet_log, nullptr);
    llama_backend_init();
    if (args.system_info) {
        std::fprintf(stderr, "%s\n", llama_print_system_info());
    }
    llama_model_params mparams = llama_model_default_params();
    mparams.n_gpu_layers = 0;
    llama_model *model = llama_model_load_from_file(args.model.c_str(), mparams);
    if (model == nullptr) {
        std::fprintf(stderr, "natter-llama-reference: cannot load %s\n", args.model.c_str());
        return 1;
    }
    Runs pp, tg;
    bool ok = measure(model, args, args.prompt_tokens, 0, pp) && measure(model, args, 0, args.gen_tokens, tg);
    llama_model_free(model);
    llama_backend_free();
    if (!ok) {
        return 1;
    }
    std::printf("{\"engine\":\"llama.cpp\",\"version\":\"llama.cpp (%s) through its C API, llama-bench's tests\","
                "\"threads\":%d,\"prompt_tokens\":%d,\"gen_tokens\":%d,\"pp_tok_s\":%.1f,\"tg_tok_s\":%.1f,"
                "\"pp_avg_tok_s\":%.1f,\"tg_avg_tok_s\":%.1f,\"pp_runs\":%s,\"tg_runs\":%s}\n",
                LLAMA_CPP_SOURCE, args.threads, args.prompt_tokens, args.gen_tokens, pp.median(), tg.median(),
                pp.mean(), tg.mean(), pp.json().c_str(), tg.json().c_str());
    return 0;
}
