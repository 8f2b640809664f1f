// The real binary, run as a user would: each class of bad input gets exactly
// one line on stderr naming the file/field/flag, and exit code 2; good input
// exits 0.
#include <doctest/doctest.h>

#include <array>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>
#include <utility>
#include <sys/wait.h>

#include "costmodel/attention_calibration.h"
#include "costmodel/efficiency.h"
#include "models/catalog.h"
#include "models/json_file.h"
#include "test_support.h"

namespace {

struct Run {
  int code = -1;
  std::string out, err;
};

Run run(const std::string& args) {
  const std::string err_file = "/tmp/zp_cli_test_stderr.txt";
  const std::string cmd = std::string(ZEROPLAN_BIN) + " " + args + " 2>" + err_file;
  Run r;
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (FILE* f = fopen(err_file.c_str(), "r")) {
    while ((n = fread(buf.data(), 1, buf.size(), f)) > 0) r.err.append(buf.data(), n);
    fclose(f);
  }
  return r;
}

std::string bad(const char* file) { return std::string(ZP_TEST_DATA) + "/bad/" + file; }

void write_text(const std::string& path, const std::string& text) {
  FILE* f = fopen(path.c_str(), "w");
  REQUIRE(f != nullptr);
  fputs(text.c_str(), f);
  fclose(f);
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A user's mistake: exit 2, one line, mentioning `needle`.
void check_one_line_error(const std::string& args, const std::string& needle) {
  CAPTURE(args);
  Run r = run(args);
  CAPTURE(r.err);
  CHECK(r.code == 2);
  CHECK(r.err.find(needle) != std::string::npos);
  CHECK(r.err.rfind("zeroplan: ", 0) == 0);
  CHECK(r.err.find('\n') == r.err.size() - 1);  // exactly one line
  CHECK(r.err.find("terminate") == std::string::npos);
}

}  // namespace

TEST_CASE("good input exits 0") {
  Run r = run("");
  CHECK(r.code == 0);
  CHECK(r.out.find("what fits for Llama-3.1-8B on 8 x H100-80GB") != std::string::npos);  // the default question
  CHECK(r.out.find("tokens/s") != std::string::npos);
  CHECK(run("models").code == 0);
  CHECK(run("gpus").code == 0);
  Run p = run("params gpt2-124m --json");
  CHECK(p.code == 0);
  CHECK(p.out.find("\"total\": 124439808") != std::string::npos);
  CHECK(run("params " + std::string(ZP_TEST_DATA) + "/hf/mixtral-8x7b").code == 0);
  Run e = run("explain --model llama-3.1-8b --gpus 8 --gpu H100-80GB --zero 3 --json");
  CHECK(e.code == 0);
  CHECK(e.out.find("\"schema\": \"zeroplan.explain\"") != std::string::npos);
  CHECK(e.out.find("\"tokens_per_s\"") != std::string::npos);
  CHECK(e.out.find("all-gather (parameters, fwd + bwd)") != std::string::npos);  // ZeRO-3's 3 Psi rows
  // The attention core's backward at its kernel's products: zeroplan's flash
  // tiles 7 (3.5 x the forward's 2), FlashAttention-2 5, materialised 4.
  for (const auto& [flags, ratio] : std::vector<std::pair<std::string, double>>{
           {"", 3.5}, {" --framework megatron", 2.5}, {" --attention materialized", 2.0}}) {
    const Run k = run("explain --model llama-3.1-8b --gpus 8 --gpu H100-80GB --zero 1 --json" + flags);
    CAPTURE(flags);
    REQUIRE(k.code == 0);
    CHECK(zp::Json::parse(k.out).at("time").at("attention_backward_ratio").get<double>() == ratio);
  }
  CHECK(run("explain --model llama-3.1-8b --gpus 8 --gpu H100-80GB").out.find("backward 3.5 x its forward") != std::string::npos);
  Run t = run("explain --model llama-3.1-8b --gpus 8 --gpu H100-80GB --zero 1 --tokens 1e12");
  CHECK(t.code == 0);
  CHECK(t.out.find("time to train 1000.0B tokens") != std::string::npos);
  CHECK(t.out.find("reduce-scatter (gradients)") != std::string::npos);
}

TEST_CASE("every subcommand's --help shows an example") {
  for (const char* sub : {"models", "gpus", "params", "explain", "fit", "min-gpus", "max-model", "compare", "emit", "run",
                          "validate", "calibrate"}) {
    CAPTURE(sub);
    Run r = run(std::string(sub) + " --help");
    CHECK(r.code == 0);
    CHECK(r.out.find("Example: zeroplan") != std::string::npos);
  }
}

TEST_CASE("unknown names suggest the closest ones") {
  check_one_line_error("params llama-3-8b", "unknown model 'llama-3-8b'; did you mean");
  check_one_line_error("explain --model gpt2-124m --gpu H100 --gpus 1", "unknown GPU 'H100'; did you mean H100-80GB");
  check_one_line_error("explain --model gpt2-124m --gpu H100-80GB --node dgx-h10 --gpus 1",
                       "unknown node preset 'dgx-h10'; did you mean dgx-h100");
}

TEST_CASE("bad files: malformed JSON, missing/negative/zero sizes, bad shapes, unsupported types, overflow") {
  check_one_line_error("params " + bad("malformed.json"), "malformed.json:5:14: malformed JSON");
  check_one_line_error("params " + bad("missing_hidden.json"), "field 'hidden_size': missing");
  check_one_line_error("params " + bad("negative_layers.json"), "field 'num_hidden_layers': expected a positive integer");
  check_one_line_error("params " + bad("zero_heads.json"), "field 'num_attention_heads': expected a positive integer, got 0");
  check_one_line_error("params " + bad("heads_not_dividing_hidden.json"), "30 heads do not divide hidden_size 4096");
  check_one_line_error("params " + bad("kv_not_dividing_heads.json"), "num_kv_heads (5) must divide num_heads (32)");
  check_one_line_error("params " + bad("unsupported_type.json"), "unsupported model type \"t5\"");
  check_one_line_error("params " + bad("overflow.json"), "overflows 64 bits");
  // 2^31 layers once made fit's split search run for hours; a limit stops it at the file.
  check_one_line_error("fit --gpu H100-80GB --gpus 8 --model " + bad("too_many_layers.json"),
                       "the layer count (num_layers, num_hidden_layers or n_layer) is 2147483648; expected at most 10000");
  check_one_line_error("params /nonexistent/config.json", "unknown model '/nonexistent/config.json'");
}

TEST_CASE("bad flags and impossible layouts") {
  const std::string base = "explain --model llama-3.1-8b --gpu H100-80GB ";
  check_one_line_error(base + "--gpus 8 --zero 5", "--zero");
  check_one_line_error(base + "--gpus 8 --precision fp8", "--precision");
  check_one_line_error(base + "--gpus 8 --bogus", "--bogus");
  check_one_line_error(base + "--gpus 3 --tp 3", "tp 3 does not divide the 32 attention heads");
  check_one_line_error(base + "--gpus 64 --pp 64", "pp 64 is larger than the 32 layers");
  check_one_line_error(base + "--gpus 8 --zero 2 --offload-param cpu", "parameter offload needs ZeRO stage 3");
  check_one_line_error(base + "--gpus 12", "expected a multiple of the 8 GPUs per dgx-h100 node");
  check_one_line_error(base + "--gpus 8 --dp 4", "does not equal --gpus 8");
  check_one_line_error(base + "--gpus 8 --global-batch 12", "--global-batch 12: expected a multiple of dp x micro-batch = 8");
  check_one_line_error("explain --model gpt2-124m --gpu V100-32GB --gpus 1 --precision bf16", "no bf16 support; use --precision fp16");
  {
    // Unless given, the precision is the GPU's best, as fit's: fp16 on a V100.
    const Run v100 = run("explain --model gpt2-124m --gpu V100-32GB --gpus 1");
    CHECK(v100.code == 0);
    CHECK(v100.out.find(" fp16 ") != std::string::npos);
  }
  check_one_line_error("explain --model gpt2-124m --gpu H100-80GB --gpus 1 --seq 4096", "exceeds the model's 1024 learned positions");
  check_one_line_error(base + "--gpus 8 --micro-batch 1048576 --seq 16777216", "overflow");
}

TEST_CASE("planning subcommands") {
  Run none = run("fit --model llama-3.1-70b --gpus 8 --gpu H100-80GB --no-offload");
  CHECK(none.code == 0);
  CHECK(none.out.find("Nothing fits. Nearest miss:") != std::string::npos);
  CHECK(none.out.find("16 GPUs:") != std::string::npos);
  Run min = run("min-gpus --model llama-3.1-70b --gpu H100-80GB --no-offload");
  CHECK(min.code == 0);
  CHECK(min.out.find("fewest GPUs that train llama-3.1-70b: 16") != std::string::npos);
  Run max = run("max-model --gpus 8 --gpu H100-80GB --family llama");
  CHECK(max.code == 0);
  CHECK(max.out.find("without offload: llama hidden") != std::string::npos);
  CHECK(max.out.find("optimizer offload to CPU (ZeRO-Offload): llama hidden") != std::string::npos);
  CHECK(max.out.find("(ZeRO-Infinity): llama hidden") != std::string::npos);
  Run cmp = run("compare --model llama-3.1-8b --gpus 8 --gpu H100-80GB --ranks 1,2 --layout tp=2,zero=1,mb=1,ga=4");
  CHECK(cmp.code == 0);
  CHECK(cmp.out.find("rank 2") != std::string::npos);
  CHECK(cmp.out.find("tokens/s") != std::string::npos);
  // gpt2-1.5b: 25 heads allow only tp 1, so dp = 64/pp >= 2 never divides 3.
  Run none_valid = run("fit --model gpt2-1.5b --gpus 64 --gpu H100-80GB --seq 1024 --global-batch 3");
  CHECK(none_valid.code == 0);
  CHECK(none_valid.out.find("No layout satisfies the constraints: the global batch 3") != std::string::npos);
  Run why = run("fit --model llama-3.1-8b --gpus 8 --gpu H100-80GB --why-not tp=3");
  CHECK(why.out.find("invalid: dp x tp x pp") != std::string::npos);
  Run json = run("fit --model gpt2-124m --gpus 1 --gpu H100-80GB --json --top 2");
  CHECK(json.code == 0);
  CHECK(json.out.find("\"schema\": \"zeroplan.fit\"") != std::string::npos);
}

TEST_CASE("emit writes whole files through a temporary name") {
  const std::string dir = "/tmp/zp_cli_emit_test";
  std::system(("rm -rf " + dir).c_str());
  Run e = run("emit --format deepspeed --model llama-3.1-8b --gpus 8 --gpu H100-80GB --zero 2 --out " + dir);
  CHECK(e.code == 0);
  for (const char* f : {"ds_config.json", "hostfile", "launch.sh"}) {
    FILE* fp = fopen((dir + "/" + f).c_str(), "r");
    CHECK(fp != nullptr);
    if (fp) fclose(fp);
  }
  FILE* tmp = fopen((dir + "/.ds_config.json.tmp").c_str(), "r");
  CHECK(tmp == nullptr);
  Run r = run("emit --format megatron --model llama-3.1-8b --gpus 8 --gpu H100-80GB --rank 1");
  CHECK(r.code == 0);
  CHECK(r.out.find("pretrain_gpt.py") != std::string::npos);
  std::system(("rm -rf " + dir).c_str());
}

TEST_CASE("planning bad input") {
  check_one_line_error("emit --format bogus --model gpt2-124m --gpu H100-80GB --seq 1024", "--format");
  check_one_line_error("compare --model llama-3.1-8b --gpus 8 --gpu H100-80GB --layout tp=x --layout tp=2",
                       "layout 'tp=x': expected a non-negative integer");
  check_one_line_error("fit --model llama-3.1-8b --gpus 8 --gpu H100-80GB --why-not foo=1", "layout key 'foo'");
  check_one_line_error("fit --model llama-3.1-8b --gpus 8 --gpu H100-80GB --why-not attn=fast",
                       "layout 'attn=fast': expected flash or materialized");
  check_one_line_error("compare --model llama-3.1-8b --gpus 8 --gpu H100-80GB --layout tp=2", "at least two layouts");
  check_one_line_error("max-model --gpus 8 --gpu H100-80GB --family bert", "--family");
  check_one_line_error("min-gpus --model llama-3.1-8b --gpu H100-80GB --days 10", "--days needs --tokens");
  check_one_line_error("fit --model gpt2-124m --gpus 8 --gpu H100-80GB --seq 4096", "exceeds the model's 1024 learned positions");
  check_one_line_error("explain --model gpt2-124m --gpus 1 --gpu H100-80GB --seq 1024 --rank 100 --no-such", "--no-such");
  check_one_line_error("fit --model gpt2-124m --gpus 8 --gpu V100-32GB --precision bf16",
                       "--precision bf16: V100-32GB has no bf16 support; use --precision fp16");
  check_one_line_error("fit --model gpt2-124m --gpus 8 --gpu H100-80GB --attention fast", "--attention");
}

TEST_CASE("fit names its precision and attention; --attention any on a V100 finds materialised attention") {
  Run v100 = run("fit --model gpt2-1.5b --gpus 8 --gpu V100-32GB --top 1 --attention any");
  CHECK(v100.code == 0);
  CHECK(v100.out.find("fp16, flash or materialized attention") != std::string::npos);
  CHECK(v100.out.find("mat-attn") != std::string::npos);
  // explain prices the other kernel beside the CUDA-core flash path, and only there.
  Run slow = run("explain --model gpt2-1.5b --gpus 8 --gpu V100-32GB --precision fp16 --zero 1 --micro-batch 1 --seq 1024");
  CHECK(slow.code == 0);
  CHECK(slow.out.find("warp-per-row kernels, CUDA cores), backward 3.5 x its forward (the kernel's products, "
                      "docs/time-model.md)\n  with --attention materialized (cuBLAS products): step ") != std::string::npos);
  Run fast = run("explain --model gpt2-1.5b --gpus 8 --gpu H100-80GB --zero 1 --micro-batch 1 --seq 1024");
  CHECK(fast.out.find("with --attention materialized") == std::string::npos);
  // explain --rank 1 is fit's first layout: fp16 and materialised attention on a V100 unless asked otherwise.
  Run first = run("explain --model gpt2-1.5b --gpus 8 --gpu V100-32GB --seq 1024 --rank 1");
  CHECK(first.code == 0);
  CHECK(first.out.find("fp16 materialized-attention [zeroplan]") != std::string::npos);
  check_one_line_error("explain --model gpt2-1.5b --gpus 8 --gpu V100-32GB --seq 1024 --rank 1 --precision bf16",
                       "--precision bf16: V100-32GB has no bf16 support");
  Run h100 = run("fit --model gpt2-1.5b --gpus 8 --gpu H100-80GB --top 3 --json");
  CHECK(h100.code == 0);
  CHECK(h100.out.find("\"attention\": \"flash\"") != std::string::npos);
  CHECK(h100.out.find("\"recompute\": \"selective\"") == std::string::npos);
}

TEST_CASE("run: bad plan files get one line and exit 2") {
  const std::string dir = "/tmp/zp_cli_run_test";
  std::system(("rm -rf " + dir).c_str());
  const std::string model = std::string(ZP_TEST_DATA) + "/models/tiny-gpt.json";
  CHECK(run("emit --format zeroplan --model " + model + " --gpu H100-80GB --gpus 1 --precision fp16 --seq 32 --out " + dir).code == 0);
  check_one_line_error("run --plan " + dir + "/plan.json --steps 1", "precision fp16: the executor runs bf16 mixed precision or fp32");
  // The default precision on an H100: bf16 mixed precision.
  CHECK(run("emit --format zeroplan --model " + model + " --gpu H100-80GB --gpus 1 --seq 32 --out " + dir).code == 0);
  Run ok = run("run --plan " + dir + "/plan.json --steps 2");
  CHECK(ok.code == 0);
  CHECK(ok.out.find("step 1") != std::string::npos);
  const std::string llama = std::string(ZP_TEST_DATA) + "/models/tiny-llama.json";
  CHECK(run("emit --format zeroplan --model " + llama + " --gpu H100-80GB --gpus 1 --precision fp32 --seq 32 --out " + dir + "/llama").code == 0);
  Run llama_run = run("run --plan " + dir + "/llama/plan.json --steps 3");
  CHECK(llama_run.code == 0);
  CHECK(llama_run.out.find("step 2") != std::string::npos);
  {
    FILE* f = fopen((dir + "/bad.json").c_str(), "w");
    REQUIRE(f != nullptr);
    fputs("{\"schema\": \"zeroplan.plan\", \"version\": 1, \"extra\": 1}", f);
    fclose(f);
  }
  check_one_line_error("run --plan " + dir + "/bad.json", "field 'extra': unknown field");
  check_one_line_error("run --plan " + dir + "/missing.json", "missing.json: cannot open the file");
  {
    // 2^32 + 1 micro-batches once narrowed to 1.
    zp::Json plan = zp::parse_json_file(dir + "/plan.json");
    plan["layout"]["micro_batch"] = (uint64_t{1} << 32) + 1;
    write_text(dir + "/wrap.json", plan.dump());
  }
  check_one_line_error("run --plan " + dir + "/wrap.json --steps 1",
                       "(layout): field 'micro_batch': expected a positive integer up to 1048576");
  // Heads wider than the CUDA flash kernels hold are refused before any GPU is touched.
  write_text(dir + "/wide-heads.json",
             "{\"name\": \"wide-heads\", \"family\": \"llama\", \"source\": \"test\", \"num_layers\": 1,"
             " \"hidden_size\": 640, \"ffn_hidden_size\": 64, \"num_heads\": 2, \"num_kv_heads\": 2, \"head_dim\": 320,"
             " \"vocab_size\": 64, \"max_seq_len\": 32, \"norm\": \"rmsnorm\", \"mlp\": \"swiglu\","
             " \"position\": \"rotary\", \"tied_embeddings\": false, \"dropout\": false}");
  REQUIRE(run("emit --format zeroplan --model " + dir + "/wide-heads.json --gpu H100-80GB --gpus 1 --seq 32 --out " + dir +
              "/wide").code == 0);
  check_one_line_error("run --plan " + dir + "/wide/plan.json --steps 1 --device cuda",
                       "attention flash: the CUDA flash kernels take head_dim up to 256, the model has 320");
  // A model no test machine can hold (8e11 parameters, 1.5 TiB of bf16 initial values alone) is
  // refused before anything is allocated, with what it needs and what the machine has.
  write_text(dir + "/huge-vocab.json",
             "{\"name\": \"huge-vocab\", \"family\": \"gpt\", \"source\": \"test\", \"num_layers\": 1,"
             " \"hidden_size\": 4096, \"ffn_hidden_size\": 16384, \"num_heads\": 32, \"vocab_size\": 200000000,"
             " \"max_seq_len\": 32, \"norm\": \"layernorm\", \"mlp\": \"gelu\", \"position\": \"learned\","
             " \"tied_embeddings\": true, \"qkv_bias\": true, \"attn_out_bias\": true, \"mlp_bias\": true, \"dropout\": false}");
  REQUIRE(run("emit --format zeroplan --model " + dir + "/huge-vocab.json --gpu H200-141GB --gpus 8 --zero 3 --seq 32 --out " +
              dir + "/huge").code == 0);
  check_one_line_error("run --plan " + dir + "/huge/plan.json --steps 1 --emulate-rank 0",
                       "huge/plan.json: the run needs about");
  // A vocabulary eight ranks cannot all get tokens of (13 rows in shards of 2) is a reason not to run, not a crash.
  write_text(dir + "/tiny-vocab.json",
             "{\"name\": \"tiny-vocab\", \"family\": \"gpt\", \"source\": \"test\", \"num_layers\": 1,"
             " \"hidden_size\": 64, \"ffn_hidden_size\": 256, \"num_heads\": 8, \"vocab_size\": 13, \"max_seq_len\": 8,"
             " \"norm\": \"layernorm\", \"mlp\": \"gelu\", \"position\": \"learned\", \"tied_embeddings\": true,"
             " \"qkv_bias\": true, \"attn_out_bias\": true, \"mlp_bias\": true, \"dropout\": false}");
  const Run tiny = run("validate --model " + dir + "/tiny-vocab.json --gpu H100-80GB --gpus 8 --tp 8 --seq 8 --steps 1 --out " +
                       dir + "/tiny");
  CHECK(tiny.code == 0);
  const zp::Json tiny_doc = zp::parse_json_file(dir + "/tiny/validate.json");
  CHECK(tiny_doc.at("cases")[0].at("why_not").get<std::string>().find("leaves the last rank no tokens") != std::string::npos);
  std::system(("rm -rf " + dir).c_str());
}

TEST_CASE("validate: a matrix of layouts runs as emulated ranks; memory within issue 7's targets; bad matrices are one line") {
  const std::string dir = "/tmp/zp_cli_validate_test";
  std::system(("rm -rf " + dir + " && mkdir -p " + dir).c_str());
  const std::string gpt = std::string(ZP_TEST_DATA) + "/models/tiny-gpt.json";
  const std::string llama = std::string(ZP_TEST_DATA) + "/models/tiny-llama.json";
  // tiny-gpt with a vocabulary of 4,096: the tied table outweighs a few tokens' activations.
  const std::string wide_vocab = dir + "/wide-vocab.json";
  {
    zp::Json m = zp::parse_json_file(gpt);
    m["name"] = "tiny-gpt-wide-vocab";
    m["vocab_size"] = 4096;
    std::ofstream(wide_vocab) << m.dump();
  }
  // tiny-gpt with 4 layers: 2 stages x 2 chunks of one layer (interleaved).
  const std::string four_layers = dir + "/four-layers.json";
  {
    zp::Json m = zp::parse_json_file(gpt);
    m["name"] = "tiny-gpt-4-layers";
    m["num_layers"] = 4;
    std::ofstream(four_layers) << m.dump();
  }
  {
    FILE* f = fopen((dir + "/matrix.json").c_str(), "w");
    REQUIRE(f != nullptr);
    fputs(("{\"cases\": [{\"model\": \"" + gpt + "\", \"gpu\": \"H100-80GB\", \"gpus\": 8, \"seq\": 32, \"layout\": \"zero=3,mb=2\"},\n"
           " {\"model\": \"" + llama + "\", \"gpu\": \"H100-80GB\", \"gpus\": 8, \"seq\": 32, \"precision\": \"fp32\","
           " \"layout\": \"tp=2,pp=2,zero=1,mb=2,ga=4,sp=1\"},\n"
           " {\"model\": \"" + gpt + "\", \"gpu\": \"H100-80GB\", \"gpus\": 8, \"seq\": 32, \"layout\": \"zero=1,opt=nvme\"},\n"
           " {\"model\": \"" + gpt + "\", \"gpu\": \"H100-80GB\", \"gpus\": 8, \"seq\": 32,"
           " \"layout\": \"pp=2,zero=2,mb=2,ga=4,recompute=full\"},\n"
           " {\"model\": \"" + llama + "\", \"gpu\": \"H100-80GB\", \"gpus\": 8, \"seq\": 32, \"layout\": \"zero=2,mb=2,opt=cpu\"},\n"
           // Few tokens: a pipeline or tensor-parallel rank peaks at its step's end, its activations gone.
           " {\"model\": \"" + gpt + "\", \"gpu\": \"H100-80GB\", \"gpus\": 4, \"seq\": 8, \"layout\": \"pp=2,zero=1,mb=1,ga=2\"},\n"
           " {\"model\": \"" + gpt + "\", \"gpu\": \"H100-80GB\", \"gpus\": 4, \"seq\": 8,"
           " \"layout\": \"tp=2,zero=1,mb=1,ga=2,recompute=full\"},\n"
           // ... or at the pipeline's sum of the tied embedding's gradient, just before.
           " {\"model\": \"" + wide_vocab + "\", \"gpu\": \"H100-80GB\", \"gpus\": 2, \"seq\": 8, \"layout\": \"pp=2,zero=0,mb=1,ga=2\"},\n"
           " {\"model\": \"" + wide_vocab + "\", \"gpu\": \"H100-80GB\", \"gpus\": 4, \"seq\": 8, \"layout\": \"pp=2,zero=2,mb=1,ga=2\"},\n"
           // Megatron's interleaved schedule, 2 chunks a stage, ZeRO-1 across 2 pipelines.
           " {\"model\": \"" + four_layers + "\", \"gpu\": \"H100-80GB\", \"gpus\": 4, \"seq\": 32,"
           " \"layout\": \"pp=2,vpp=2,zero=1,mb=2,ga=4\"}]}")
              .c_str(),
          f);
    fclose(f);
  }
  const Run ok = run("validate --matrix " + dir + "/matrix.json --steps 2 --warmup 1 --out " + dir + "/out");
  CHECK(ok.code == 0);
  const zp::Json doc = zp::parse_json_file(dir + "/out/validate.json");
  REQUIRE(doc.at("cases").size() == 10);
  for (int i : {0, 1, 3, 4, 5, 6, 7, 8, 9}) {
    const zp::Json& c = doc.at("cases")[static_cast<size_t>(i)];
    CAPTURE(c.at("name").get<std::string>());
    REQUIRE(c.at("run").get<bool>());
    // The model states are the cost model's to the byte; the rest is reported as measured.
    CHECK(c.at("memory").at("model_states_match").get<bool>());
    for (const char* state : {"weights", "optimizer_states"}) {
      const zp::Json& components = c.at("memory").at("components");
      if (components.contains(state)) CHECK(components.at(state).at("error").get<double>() == 0.0);  // (offloaded: on the host)
    }
    CHECK(c.at("memory").at("peak").at("measured_bytes").get<double>() > 0);
    // Peak within 3% and every predicted component within 5% (on the CPU
    // with the backend's own scratch set aside, which the report says).
    CHECK(c.at("meets_memory_targets").get<bool>());
    CHECK(c.at("memory").at("components").at("backend_scratch").value("set_aside", false));
    CHECK(c.at("step_time").at("compared").get<bool>() == false);
    // The time predicted for the rank that ran is no more than the world's
    // step (which adds the network and any bubble), and its phases add up to it.
    const zp::Json& t = c.at("step_time");
    CHECK(t.at("predicted_rank_s").get<double>() > 0);
    CHECK(t.at("predicted_rank_s").get<double>() <= t.at("predicted_world_s").get<double>() * (1 + 1e-12));
    double phases_s = 0;
    for (const auto& [name, phase] : t.at("phases").items()) phases_s += phase.at("predicted_s").get<double>();
    CHECK(phases_s == doctest::Approx(t.at("predicted_rank_s").get<double>()).epsilon(1e-9));
    CHECK(t.at("phases").at("compute (forward + backward)").at("measured_s").get<double>() > 0);
    for (const char* chart : {"_memory.svg", "_time.svg"}) {
      CHECK(std::filesystem::exists(dir + "/out/case" + std::to_string(i) + chart));
    }
  }
  // At their step's end the pipeline and tensor-parallel ranks hold no
  // activations and ZeRO-1's bucket (cases 5, 6), or the other end stage's
  // tied-embedding gradient and the tied units' open gradients (7, 8), and
  // the rows say so (under full recompute the recomputed layer's set stays).
  for (int i : {5, 6, 7, 8}) {
    const zp::Json& components = doc.at("cases")[static_cast<size_t>(i)].at("memory").at("components");
    CAPTURE(i);
    CHECK_FALSE(components.contains("activations"));  // in neither the rows nor the executor's peak
    CHECK_FALSE(components.contains("logits"));
    CHECK(components.at("buckets").at("error").get<double>() == 0);
  }
  CHECK(doc.at("cases")[6].at("memory").at("components").at("recompute_workspace").at("error").get<double>() == 0);
  // The local copies standing in for the collectives are predicted where
  // they run: ZeRO-3's gathers inside forward and backward, ZeRO-2's
  // gather of the updated chunks at the step's end; the report says so.
  const zp::Json& z3_copies = doc.at("cases")[0].at("step_time").at("predicted_local_copies_s");
  CHECK(z3_copies.at("in_compute").get<double>() > 0);
  CHECK(z3_copies.at("at_step_end").get<double>() == 0);
  CHECK(doc.at("cases")[4].at("step_time").at("predicted_local_copies_s").at("at_step_end").get<double>() > 0);
  CHECK(read_text(dir + "/out/report.md").find("are the local copies of its collectives inside forward and backward") !=
        std::string::npos);
  // A pipeline's rank waits for no other stage: the world's step has a bubble it did not run.
  CHECK(doc.at("cases")[3].at("step_time").at("predicted_rank_s").get<double>() <
        doc.at("cases")[3].at("step_time").at("predicted_world_s").get<double>());
  // The Llama case's most loaded stage ran as its emulated rank (stage x dp x tp).
  const zp::Json& second = doc.at("cases")[1];
  CHECK(second.at("emulated_rank").get<int>() == second.at("pipeline_stage").get<int>() * 4);
  // NVMe offload is not run, and says why.
  CHECK(doc.at("cases")[2].at("run").get<bool>() == false);
  CHECK(doc.at("cases")[2].at("why_not").get<std::string>().find("nvme") != std::string::npos);
  CHECK(std::filesystem::exists(dir + "/out/report.md"));
  {
    FILE* f = fopen((dir + "/bad.json").c_str(), "w");
    REQUIRE(f != nullptr);
    fputs(("{\"cases\": [{\"model\": \"" + gpt + "\", \"gpu\": \"H100-80GB\", \"zero\": 3}]}").c_str(), f);
    fclose(f);
  }
  check_one_line_error("validate --matrix " + dir + "/bad.json --out " + dir + "/bad", "field 'zero': unknown field");
  // 2^32 + 32 once narrowed to a sequence of 32 tokens.
  write_text(dir + "/wrap.json", "{\"cases\": [{\"model\": \"" + gpt + "\", \"gpu\": \"H100-80GB\", \"seq\": 4294967328}]}");
  check_one_line_error("validate --matrix " + dir + "/wrap.json --out " + dir + "/wrap",
                       "cases[0]: field 'seq': expected a positive integer up to 16777216");
  write_text(dir + "/fp8.json", "{\"cases\": [{\"model\": \"" + gpt + "\", \"gpu\": \"H100-80GB\", \"precision\": \"fp8\"}]}");
  check_one_line_error("validate --matrix " + dir + "/fp8.json --out " + dir + "/fp8",
                       "cases[0]: field 'precision': expected bf16, fp16 or fp32, got \"fp8\"");
  check_one_line_error("validate --out " + dir + "/none", "--model and --gpu (or --matrix FILE, or --plan FILE) are required");
  // A plan file: its model, layout and cluster.
  CHECK(run("emit --format zeroplan --model " + gpt + " --gpu H100-80GB --gpus 4 --zero 2 --seq 32 --out " + dir + "/plan").code == 0);
  CHECK(run("validate --plan " + dir + "/plan/plan.json --steps 1 --warmup 0 --out " + dir + "/fromplan").code == 0);
  const zp::Json planned = zp::parse_json_file(dir + "/fromplan/validate.json");
  CHECK(planned.at("cases")[0].at("world").get<int>() == 4);
  CHECK(planned.at("cases")[0].at("memory").at("model_states_match").get<bool>());
  check_one_line_error("validate --plan " + dir + "/plan/plan.json --matrix " + dir + "/matrix.json --out " + dir + "/both",
                       "give one of --matrix FILE, --plan FILE or one layout's flags");
  // Each case run is kept as a plan file; calibrate rebuilds its prediction
  // from it. A CPU run's times are not the GPU's: refused.
  CHECK(std::filesystem::exists(dir + "/out/" + doc.at("cases")[1].at("plan_file").get<std::string>()));
  check_one_line_error("calibrate --gpu H100-80GB --validate " + dir + "/out/validate.json",
                       "field 'backend': measured on the cpu backend");
  check_one_line_error("calibrate --gpu H100-80GB", "give --gemm FILE.csv, --attention FILE.csv, --elementwise FILE.csv, --validate validate.json or several");
  {
    std::ofstream f(dir + "/out/elementwise.csv");
    f << "kernel,dtype,elements,bytes,ms,GBps,of_copy\ncopy,bytes,1,100,0.1,1,1\nmystery_kernel,bf16,1,100,0.1,1,0\n";
  }
  check_one_line_error("calibrate --gpu H100-80GB --elementwise " + dir + "/out/elementwise.csv",
                       "elementwise.csv:3: field 'kernel': expected copy or one of layernorm_forward");
  check_one_line_error("calibrate --gpu H100-80GB --elementwise " + dir + "/out/absent.csv", "--elementwise " + dir + "/out/absent.csv: cannot be read");
  {
    std::ofstream f(dir + "/out/no_cases.json");
    f << R"({"schema": "zeroplan.validate", "backend": "cuda"})";
  }
  check_one_line_error("calibrate --gpu H100-80GB --validate " + dir + "/out/no_cases.json", "field 'cases': expected an array");
  // Times as the file's curves predict them, as if measured on the GPU: the
  // fit gives the file's attention, HBM and launch values back, so the plan
  // files rebuild exactly the prediction validate made.
  zp::Json gpu_like = doc;
  gpu_like["backend"] = "cuda";
  for (zp::Json& c : gpu_like["cases"]) {
    if (!c.at("run").get<bool>()) continue;
    c["step_time"]["compared"] = true;
    zp::Json& compute = c["step_time"]["phases"]["compute (forward + backward)"];
    compute["measured_s"] = compute.at("predicted_s");
  }
  {
    std::ofstream f(dir + "/out/gpu_like.json");
    f << gpu_like.dump();
  }
  const Run fitted = run("calibrate --gpu H100-80GB --validate " + dir + "/out/gpu_like.json --out " + dir + "/fitted.json");
  CHECK(fitted.code == 0);
  CHECK(fitted.out.find("fitted to 9 compute phases") != std::string::npos);
  const zp::Json curves = zp::parse_json_file(dir + "/fitted.json");
  const zp::Json file = zp::parse_json_file(zp::efficiency_file(zp::Catalog::builtin_data_dir(), "H100-80GB"));
  for (const char* field : {"attention_peak_fraction", "flash_tc_fraction", "hbm_fraction", "kernel_overhead_us"}) {
    CAPTURE(field);
    CHECK(curves.at(field).get<double>() == doctest::Approx(file.at(field).get<double>()).epsilon(1e-3));
  }
  CHECK(curves.at("source").get<std::string>().find("compute phases of") != std::string::npos);
  // The charts' text is escaped: a model file's name may hold an ampersand.
  std::filesystem::copy_file(gpt, dir + "/a&b.json");
  REQUIRE(run("validate --model '" + dir + "/a&b.json' --gpu H100-80GB --gpus 2 --seq 16 --steps 1 --warmup 0 --out " + dir +
              "/amp")
              .code == 0);
  for (const char* chart : {"/amp/case0_memory.svg", "/amp/case0_time.svg"}) {
    const std::string svg = read_text(dir + chart);
    CHECK(svg.find("a&amp;b.json") != std::string::npos);
    CHECK(svg.find("a&b") == std::string::npos);
  }
  CHECK(read_text(dir + "/amp/case0_memory.svg").find("backend_scratch (set aside)") != std::string::npos);
  std::system(("rm -rf " + dir).c_str());
}

TEST_CASE("calibrate: fits the GEMM curve to measured products, writes an efficiency file the time model loads") {
  const std::string csv = std::string(zp::Catalog::builtin_data_dir()) + "/measurements/h200-141gb_gemm.csv";
  const std::string out = "/tmp/zp_cli_test_calibrated.json";
  std::filesystem::remove(out);
  Run r = run("calibrate --gpu H200-141GB --gemm " + csv + " --out " + out);
  CHECK(r.code == 0);
  CHECK(r.out.find("fitted to 48 bf16 products") != std::string::npos);
  const zp::Json j = zp::parse_json_file(out);
  CHECK(j.at("gemm_peak_fraction").get<double>() > 0.5);
  CHECK(j.at("gemm_peak_fraction").get<double>() < 1.0);
  CHECK(j.at("source").get<std::string>().find("fitted by `zeroplan calibrate`") != std::string::npos);
  CHECK(j.contains("nvlink_busbw_fraction"));  // the other fields kept
  std::filesystem::remove(out);
  const std::string bad_csv = "/tmp/zp_cli_test_bad_gemm.csv";
  FILE* f = fopen(bad_csv.c_str(), "w");
  REQUIRE(f != nullptr);
  fputs("m,n,k,tflops\n1024,768,768,96\n4096,4096,x,780\n", f);
  fclose(f);
  check_one_line_error("calibrate --gpu H200-141GB --gemm " + bad_csv, "zp_cli_test_bad_gemm.csv:3: expected four positive numbers");
  check_one_line_error("calibrate --gpu H200-141GB --gemm /nonexistent/gemm.csv", "--gemm /nonexistent/gemm.csv: cannot be read");
  std::filesystem::remove(bad_csv);
}

TEST_CASE("calibrate --attention: the kernels' own rates into the efficiency file; bad rows are one line") {
  // Kernel times as the H200 file's curves price them: the fit gives the
  // file's attention fields back and writes them with the rest kept.
  const zp::EfficiencyCurves file = zp::load_efficiency(zp::Catalog::builtin_data_dir(), "H200-141GB");
  const zp::GpuSpec& gpu = zp::test::catalog().gpu("H200-141GB");
  const std::string csv = "/tmp/zp_cli_test_attention.csv", out = "/tmp/zp_cli_test_attention.json";
  std::filesystem::remove(out);
  {
    std::ofstream f(csv);
    f << "model,path,dtype,B,T,NH,KVH,hs,forward_ms,backward_ms,forward_tflops,backward_tflops\n";
    struct Row {
      const char* path;
      zp::AttentionKernel kernel;
      const char* dtype;
      zp::Precision precision;
      int NH, hs;
    };
    for (const Row& r : {Row{"flash-tc", zp::AttentionKernel::FlashTensorCores, "bf16", zp::Precision::Bf16, 25, 64},
                         Row{"materialized", zp::AttentionKernel::Materialized, "bf16", zp::Precision::Bf16, 25, 64},
                         Row{"flash-warp", zp::AttentionKernel::FlashWarp, "bf16", zp::Precision::Bf16, 8, 256},
                         Row{"flash-warp", zp::AttentionKernel::FlashWarp, "fp32", zp::Precision::Fp32, 12, 64}}) {
      zp::AttentionSample s;
      s.kernel = r.kernel;
      s.precision = r.precision;
      s.head_dim = r.hs;
      s.forward_flops = 4.0 * 4 * r.NH * 1024 * 1024 * r.hs;
      const double ms = zp::attention_sample_seconds(s, gpu, file) * 1e3;
      f << "m," << r.path << "," << r.dtype << ",4,1024," << r.NH << "," << r.NH << "," << r.hs << "," << ms / 3 << ","
        << 2 * ms / 3 << ",1,1\n";
    }
  }
  const Run r = run("calibrate --gpu H200-141GB --attention " + csv + " --out " + out);
  CHECK(r.code == 0);
  CHECK(r.out.find("fitted to 4 kernels") != std::string::npos);
  const zp::Json j = zp::parse_json_file(out);
  CHECK(j.at("attention_peak_fraction").get<double>() == doctest::Approx(file.attention_peak_fraction).epsilon(1e-3));
  CHECK(j.at("flash_tc_fraction").get<double>() == doctest::Approx(file.flash_tc_fraction).epsilon(1e-3));
  CHECK(j.at("flash_warp_fraction").get<double>() == doctest::Approx(file.flash_warp_fraction).epsilon(1e-3));
  CHECK(j.at("flash_warp_half_dim").get<double>() == doctest::Approx(file.flash_warp_half_dim).epsilon(1e-3));
  CHECK(j.at("source").get<std::string>().find("fitted by `zeroplan calibrate` to the attention kernels of") !=
        std::string::npos);
  CHECK(j.at("gemm_peak_fraction").get<double>() == file.gemm_peak_fraction);  // the other fields kept
  std::filesystem::remove(out);
  {
    std::ofstream f(csv);
    f << "model,path,dtype,B,T,NH,KVH,hs,forward_ms,backward_ms,forward_tflops,backward_tflops\n"
      << "m,flash-tc,bf16,4,1024,25,25,64,-1,2,1,1\n";
  }
  check_one_line_error("calibrate --gpu H200-141GB --attention " + csv, "zp_cli_test_attention.csv:2: expected positive numbers");
  check_one_line_error("calibrate --gpu H200-141GB --attention /nonexistent/a.csv", "--attention /nonexistent/a.csv: cannot be read");
  std::filesystem::remove(csv);
}
