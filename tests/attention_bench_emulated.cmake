# bench/gpu_attention_bench on the host emulator (tests/simt) at 16 tokens,
# then its CSV through `zeroplan calibrate --attention`: every path the GPU
# session times is there and named by the kernel that ran (flash-tc for
# bf16 heads of 64 and 128, flash-warp for the 256-wide bf16 head and for
# fp32), calibrate reads all of it, and the emulator's rates, no GPU's, are
# reported and never written.
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK})
execute_process(COMMAND ${BENCH} 1 16 RESULT_VARIABLE rc OUTPUT_FILE ${WORK}/attention.csv ERROR_VARIABLE err TIMEOUT 100)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "gpu_attention_bench (emulated) exited ${rc}: ${err}")
endif()
file(STRINGS ${WORK}/attention.csv rows)
list(LENGTH rows count)
string(REGEX MATCHALL "flash-tc,bf16,[0-9]+,16,[0-9]+,[0-9]+,(64|128)," tc "${rows}")
string(REGEX MATCHALL "flash-warp,bf16,[0-9]+,16,[0-9]+,[0-9]+,256," warp_bf16 "${rows}")
string(REGEX MATCHALL "flash-warp,fp32," warp_fp32 "${rows}")
string(REGEX MATCHALL "materialized,bf16," materialized "${rows}")
foreach(list tc warp_bf16 warp_fp32 materialized)
  list(LENGTH ${list} n_${list})
endforeach()
if(NOT count EQUAL 13 OR NOT n_tc EQUAL 4 OR NOT n_warp_bf16 EQUAL 1 OR NOT n_warp_fp32 EQUAL 2 OR NOT n_materialized EQUAL 5)
  message(FATAL_ERROR "expected a header and 12 kernels (4 flash-tc, 1 + 2 flash-warp, 5 materialized), got ${count} lines: "
                      "${n_tc} ${n_warp_bf16} ${n_warp_fp32} ${n_materialized}\n${rows}")
endif()
execute_process(COMMAND ${ZEROPLAN} calibrate --gpu H200-141GB --attention ${WORK}/attention.csv
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT out MATCHES "fitted to 12 kernels" OR NOT out MATCHES "not a GPU's values: attention_peak_fraction")
  message(FATAL_ERROR "calibrate --attention exited ${rc}: ${out} ${err}")
endif()
include(${CMAKE_CURRENT_LIST_DIR}/calibrate_refuses_out.cmake)
calibrate_refuses_out(--attention ${WORK}/attention.csv attention_peak_fraction)
