# Emits a dp=2 ZeRO-1 plan for a toy GPT and runs it under mpirun with 2
# ranks; then checks the measurements file and that a wrong world size fails.
file(REMOVE_RECURSE ${WORK})
execute_process(COMMAND ${ZEROPLAN} emit --format zeroplan --model ${MODEL} --gpu H100-80GB --gpus 2 --precision fp32
                        --seq 32 --micro-batch 4 --zero 1 --out ${WORK}
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "emit failed: ${rc}")
endif()
execute_process(COMMAND ${MPIEXEC} --allow-run-as-root --oversubscribe -np 2 ${ZEROPLAN} run --plan ${WORK}/plan.json --steps 30
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "mpirun run failed (${rc}): ${out} ${err}")
endif()
file(READ ${WORK}/plan.json.measured.json measured)
string(JSON world GET "${measured}" world)
string(JSON version GET "${measured}" build version)
string(JSON precision GET "${measured}" precision)
if(NOT version MATCHES "^[0-9]+\\.[0-9]+\\.[0-9]+$" OR NOT precision STREQUAL "fp32")
  message(FATAL_ERROR "expected the build version and precision fp32 in the measurements, got '${version}' '${precision}'")
endif()
string(JSON first GET "${measured}" steps 0 loss)
string(JSON last GET "${measured}" steps 29 loss)
if(NOT world EQUAL 2)
  message(FATAL_ERROR "expected world 2, got ${world}")
endif()
if(NOT last LESS first)
  message(FATAL_ERROR "loss did not go down: ${first} -> ${last}")
endif()
message(STATUS "loss ${first} -> ${last} on 2 MPI ranks")
# ZeRO-1 on 2 ranks: weights and gradients whole, optimizer moments halved,
# exactly as the cost model's zeroplan accounting says.
string(JSON match GET "${measured}" comparison model_states_match)
if(NOT match)
  message(FATAL_ERROR "model-state bytes differ from the cost model: ${measured}")
endif()
# Activations, recompute workspace and logits within 2% of the cost model's rows.
string(JSON error GET "${measured}" comparison activation_error)
if(error GREATER 0.02 OR error LESS -0.02)
  message(FATAL_ERROR "activation bytes differ from the cost model by ${error}")
endif()
# A plan with an unknown layout field: exit 2 on every rank with a one-line
# message naming the file and field, under mpirun as well.
file(READ ${WORK}/plan.json plan)
string(JSON plan SET "${plan}" layout zero_stages 1)
file(WRITE ${WORK}/bad_plan.json "${plan}")
execute_process(COMMAND ${MPIEXEC} --allow-run-as-root --oversubscribe -np 2 ${ZEROPLAN} run --plan ${WORK}/bad_plan.json --steps 1
                RESULT_VARIABLE rc ERROR_VARIABLE err TIMEOUT 60)
if(rc EQUAL 0 OR NOT err MATCHES "bad_plan.json \\(layout\\): field 'zero_stages': unknown field")
  message(FATAL_ERROR "expected a failure naming the unknown field, got ${rc}: ${err}")
endif()
# A layout that does not fit the model (3 pipeline stages for 2 layers):
# check_layout's sentence, exit 2, on every rank.
string(JSON plan SET "${plan}" layout pp 3)
string(JSON plan REMOVE "${plan}" layout zero_stages)
file(WRITE ${WORK}/bad_layout.json "${plan}")
execute_process(COMMAND ${MPIEXEC} --allow-run-as-root --oversubscribe -np 2 ${ZEROPLAN} run --plan ${WORK}/bad_layout.json --steps 1
                RESULT_VARIABLE rc ERROR_VARIABLE err TIMEOUT 60)
if(rc EQUAL 0 OR NOT err MATCHES "pp 3 is larger than the 2 layers")
  message(FATAL_ERROR "expected check_layout's reason, got ${rc}: ${err}")
endif()
# One process for a dp=2 plan: a one-line error and exit code 2.
execute_process(COMMAND ${ZEROPLAN} run --plan ${WORK}/plan.json --steps 1
                RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 2 OR NOT err MATCHES "needs 2 processes")
  message(FATAL_ERROR "expected exit 2 and 'needs 2 processes', got ${rc}: ${err}")
endif()
# Three ranks for a dp=2 plan: every rank exits non-zero, none hangs.
execute_process(COMMAND ${MPIEXEC} --allow-run-as-root --oversubscribe -np 3 ${ZEROPLAN} run --plan ${WORK}/plan.json --steps 1
                RESULT_VARIABLE rc ERROR_VARIABLE err TIMEOUT 60)
if(rc EQUAL 0)
  message(FATAL_ERROR "a 3-rank run of a dp=2 plan should fail")
endif()
# Emits a plan of `layout_flags` for 2 ranks into ${WORK}/${name}, runs it
# for 20 steps under mpirun, and checks each measurements file named in the
# remaining arguments (the flags name the precision): the loss goes down, the model-state bytes equal the
# cost model's rows and the activation bytes are within 2% of them.
function(run_and_check name layout_flags)
  separate_arguments(flags UNIX_COMMAND "${layout_flags}")
  execute_process(COMMAND ${ZEROPLAN} emit --format zeroplan --model ${MODEL} --gpu H100-80GB --gpus 2
                          --seq 32 --micro-batch 2 ${flags} --out ${WORK}/${name}
                  RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "emit of the ${name} plan failed: ${rc}")
  endif()
  execute_process(COMMAND ${MPIEXEC} --allow-run-as-root --oversubscribe -np 2 ${ZEROPLAN} run --plan ${WORK}/${name}/plan.json
                          --steps 20
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 120)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${name} run failed (${rc}): ${out} ${err}")
  endif()
  foreach(file ${ARGN})
    file(READ ${WORK}/${name}/${file} measured)
    string(JSON first GET "${measured}" steps 0 loss)
    string(JSON last GET "${measured}" steps 19 loss)
    string(JSON match GET "${measured}" comparison model_states_match)
    string(JSON error GET "${measured}" comparison activation_error)
    if(NOT last LESS first OR NOT match OR error GREATER 0.02 OR error LESS -0.02)
      message(FATAL_ERROR "${name}/${file}: loss ${first} -> ${last}, model states match ${match}, activation error ${error}")
    endif()
    message(STATUS "${name}/${file}: loss ${first} -> ${last}, activation error ${error}")
  endforeach()
endfunction()
# A two-stage 1F1B pipeline (messages of 8 KB: past the eager limit, so the
# steady state's paired send/receive matters), one file per stage.
run_and_check(pipe "--pp 2 --grad-accum 4 --precision fp32" plan.json.measured.json plan.json.measured.stage1.json)
# Tensor parallelism over the 2 ranks.
run_and_check(tensor "--tp 2 --grad-accum 2 --precision fp32" plan.json.measured.json)
# ... with sequence parallelism, in bf16.
run_and_check(sequence "--tp 2 --sp --grad-accum 2 --precision bf16" plan.json.measured.json)
# bf16 mixed precision (the plans' default on GPUs with bf16): a pipeline, and
# ZeRO-2 across 2 ranks with the optimizer (and its fp32 master weights) offloaded.
run_and_check(pipe_bf16 "--pp 2 --grad-accum 4 --precision bf16" plan.json.measured.json plan.json.measured.stage1.json)
run_and_check(zero2_bf16 "--zero 2 --offload-optimizer cpu --grad-accum 2 --precision bf16" plan.json.measured.json)
# ZeRO-3 with the parameters offloaded, in a two-stage pipeline.
run_and_check(zero3_pipe "--pp 2 --zero 3 --offload-optimizer cpu --offload-param cpu --grad-accum 4 --precision bf16"
              plan.json.measured.json plan.json.measured.stage1.json)
# The interleaved schedule: 2 stages of 2 chunks of a 4-layer tiny GPT, one
# exchange with both neighbours after each pass.
file(READ ${MODEL} model_json)
string(JSON model_json SET "${model_json}" num_layers 4)
string(JSON model_json SET "${model_json}" name "\"tiny-gpt-4-layers\"")
file(WRITE ${WORK}/four-layers.json "${model_json}")
set(two_layer_model ${MODEL})
set(MODEL ${WORK}/four-layers.json)
run_and_check(interleaved "--pp 2 --vpp 2 --schedule interleaved --grad-accum 4 --precision bf16"
              plan.json.measured.json plan.json.measured.stage1.json)
set(MODEL ${two_layer_model})
# Checkpoint, stop, resume: 6 steps with --save, 6 more with --resume, against
# 12 steps straight; the losses after the resume are the same, bit for bit.
foreach(run "full;12" "first;6;--save;${WORK}/ckpt" "second;6;--resume;${WORK}/ckpt")
  list(GET run 0 name)
  list(GET run 1 count)
  set(extra "")
  list(LENGTH run n)
  if(n GREATER 2)
    list(SUBLIST run 2 -1 extra)
  endif()
  execute_process(COMMAND ${MPIEXEC} --allow-run-as-root --oversubscribe -np 2 ${ZEROPLAN} run --plan ${WORK}/plan.json
                          --steps ${count} ${extra} --out ${WORK}/${name}.json
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 120)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "checkpoint run ${name} failed (${rc}): ${out} ${err}")
  endif()
endforeach()
file(READ ${WORK}/full.json full)
file(READ ${WORK}/second.json second)
foreach(i RANGE 0 5)
  math(EXPR j "${i} + 6")
  string(JSON want GET "${full}" steps ${j} loss)
  string(JSON got GET "${second}" steps ${i} loss)
  string(JSON step GET "${second}" steps ${i} step)
  if(NOT want STREQUAL got OR NOT step EQUAL j)
    message(FATAL_ERROR "after resuming, step ${step}: loss ${got}, straight run ${want}")
  endif()
endforeach()
message(STATUS "resumed losses equal the straight run's, steps 6-11")
# A checkpoint missing on one rank: every rank stops with exit 2, the file named, none hangs.
file(REMOVE ${WORK}/ckpt/rank1.ckpt)
execute_process(COMMAND ${MPIEXEC} --allow-run-as-root --oversubscribe -np 2 ${ZEROPLAN} run --plan ${WORK}/plan.json --steps 1
                        --resume ${WORK}/ckpt
                RESULT_VARIABLE rc ERROR_VARIABLE err TIMEOUT 60)
if(rc EQUAL 0 OR NOT err MATCHES "ckpt/rank1.ckpt: cannot open the checkpoint")
  message(FATAL_ERROR "expected a failure naming the missing checkpoint, got ${rc}: ${err}")
endif()
