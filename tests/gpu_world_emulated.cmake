# zeroplan's multi-GPU path without a GPU: zeroplan_emulated (the CUDA
# backend on tests/simt's emulator, NCCL through tests/simt/nccl.h) runs
# plans for 2 ranks under mpirun with --device cuda, so each rank
# bootstraps an NCCL communicator over MPI, trains on its emulated GPU and
# carries data, tensor and pipeline parallelism and ZeRO's collectives
# over NCCL. Each run is checked against the CPU zeroplan's run of the same
# plan: every step's loss within bf16 tolerance, the model-state bytes equal
# to the cost model's rows and the activation bytes within 2% of them.
file(REMOVE_RECURSE ${WORK})
# tiny-gpt with 4 layers, for 2 stages of 2 interleaved chunks.
file(READ ${MODEL} model_json)
string(JSON model_json SET "${model_json}" num_layers 4)
string(JSON model_json SET "${model_json}" name "\"tiny-gpt-4-layers\"")
file(WRITE ${WORK}/four-layers.json "${model_json}")
# compare_with_cpu(name flags [model file]): the model is MODEL unless given.
function(compare_with_cpu name layout_flags)
  separate_arguments(flags UNIX_COMMAND "${layout_flags}")
  set(dir ${WORK}/${name})
  set(model ${MODEL})
  if(ARGC GREATER 2)
    set(model ${ARGV2})
  endif()
  execute_process(COMMAND ${ZEROPLAN} emit --format zeroplan --model ${model} --gpu H100-80GB --gpus 2 --seq 32
                          --micro-batch 2 --precision bf16 ${flags} --out ${dir}
                  RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "emit of the ${name} plan failed: ${rc}")
  endif()
  foreach(tag cpu cuda)
    if(tag STREQUAL "cpu")
      set(command ${ZEROPLAN} run)
    else()
      set(command ${EMULATED} run --device cuda)
    endif()
    execute_process(COMMAND ${MPIEXEC} --allow-run-as-root --oversubscribe -np 2 ${command} --plan ${dir}/plan.json
                            --steps ${STEPS} --out ${dir}/${tag}.json
                    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 120)
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "${name}: the ${tag} run failed (${rc}): ${out} ${err}")
    endif()
  endforeach()
  # Stage 0's file, and stage 1's where the plan is a pipeline.
  foreach(file cuda.json cuda.stage1.json)
    if(NOT EXISTS ${dir}/${file})
      continue()
    endif()
    string(REPLACE "cuda" "cpu" cpu_file ${file})
    file(READ ${dir}/${file} cuda)
    file(READ ${dir}/${cpu_file} cpu)
    string(JSON comm GET "${cuda}" communicator)
    string(JSON device GET "${cuda}" device)
    string(JSON match GET "${cuda}" comparison model_states_match)
    string(JSON error GET "${cuda}" comparison activation_error)
    if(NOT comm STREQUAL "nccl" OR NOT device MATCHES "^cuda:0" OR NOT match OR error GREATER 0.02 OR error LESS -0.02)
      message(FATAL_ERROR "${name}/${file}: communicator ${comm}, device ${device}, model states match ${match}, "
                          "activation error ${error}")
    endif()
    math(EXPR last "${STEPS} - 1")
    foreach(step RANGE 0 ${last})
      string(JSON got GET "${cuda}" steps ${step} loss)
      string(JSON want GET "${cpu}" steps ${step} loss)
      # bf16 products in either backend, summed in different orders: within 1%, compared in
      # parts per ten thousand (CMake's math is integer only; the losses are positive).
      string(REGEX REPLACE "^([0-9]+)\\.([0-9][0-9][0-9][0-9]).*$" "\\1\\2" got_e4 "${got}0000")
      string(REGEX REPLACE "^([0-9]+)\\.([0-9][0-9][0-9][0-9]).*$" "\\1\\2" want_e4 "${want}0000")
      math(EXPR diff "${got_e4} - ${want_e4}")
      math(EXPR bound "${want_e4} / 100")
      set(ok 0)
      if(diff LESS_EQUAL bound AND diff GREATER_EQUAL -${bound})
        set(ok 1)
      endif()
      if(NOT ok)
        message(FATAL_ERROR "${name}/${file} step ${step}: loss ${got} on the emulated GPUs, ${want} on the CPU")
      endif()
    endforeach()
    string(JSON first GET "${cuda}" steps 0 loss)
    string(JSON final GET "${cuda}" steps ${last} loss)
    message(STATUS "${name}/${file}: loss ${first} -> ${final} over NCCL, within 1% of the CPU's each step")
  endforeach()
endfunction()
compare_with_cpu(zero1 "--zero 1 --grad-accum 2")
compare_with_cpu(tensor_sp "--tp 2 --sp --grad-accum 2")
compare_with_cpu(pipe "--pp 2 --grad-accum 4")
# The interleaved schedule's exchanges: one NCCL group of sends and receives each.
compare_with_cpu(interleaved "--pp 2 --vpp 2 --schedule interleaved --grad-accum 4" ${WORK}/four-layers.json)
compare_with_cpu(zero3_offload_pipe "--pp 2 --zero 3 --offload-optimizer cpu --offload-param cpu --grad-accum 4")
compare_with_cpu(zero2_delayed "--zero 2 --offload-optimizer cpu --delayed-update --grad-accum 2")
