# The raw CUDA kernels (csrc/kernels/cuda, no torch) for the nvcc compile check:
#   addernet_cuda_kernels       static library, sm_80 + sm_90 unless CMAKE_CUDA_ARCHITECTURES is
#                               given (or ADDERNET_CUDA_ARCHITECTURES)
#   addernet_cuda_kernels_test  GPU unit test (csrc/tests/test_cuda_kernels.cu), CTest name
#                               adder_cuda_kernels; it reports "skipped" where there is no GPU
#   addernet_ptxas_report       writes ${CMAKE_BINARY_DIR}/ptxas_report.txt: registers, spills
#                               and shared memory of every kernel for every architecture
# Include it from a project with the CUDA language enabled.
#
# The same file is also the script (cmake -P, below) that captures ptxas's output of the library's
# own compile (as its compiler launcher) and writes the report from it: the kernels compile once,
# not a second time for the report (that second compile cost about 43 s of a CI run).

if(CMAKE_SCRIPT_MODE_FILE AND DEFINED CAPTURE_DIR)
  cmake_policy(VERSION 3.18)
  # Launcher mode: cmake -DCAPTURE_DIR=dir -P this-file -- <nvcc command line>. Runs the compile,
  # passes its output through, and keeps it in dir/<source name>.log for the report.
  set(_cmd "")
  set(_src "")
  math(EXPR _last "${CMAKE_ARGC} - 1")
  set(_seen_dashes OFF)
  foreach(_i RANGE ${_last})
    if(_seen_dashes)
      list(APPEND _cmd "${CMAKE_ARGV${_i}}")
      if(CMAKE_ARGV${_i} MATCHES "\\.cu$")
        set(_src "${CMAKE_ARGV${_i}}")
      endif()
    elseif(CMAKE_ARGV${_i} STREQUAL "--")
      set(_seen_dashes ON)
    endif()
  endforeach()
  execute_process(COMMAND ${_cmd} RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
  if(_src)
    get_filename_component(_name "${_src}" NAME_WE)
    file(WRITE "${CAPTURE_DIR}/${_name}.log" "${_out}")
  endif()
  if(NOT _out STREQUAL "")
    message(NOTICE "${_out}")
  endif()
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "nvcc failed (${_rc}) on ${_src}")
  endif()
  return()
endif()

if(CMAKE_SCRIPT_MODE_FILE)
  cmake_policy(VERSION 3.18)
  # Report mode. In: SOURCES ('|'-separated), OUT, WORK_DIR (where the launcher kept the logs).
  string(REPLACE "|" ";" _sources "${SOURCES}")
  set(_raw "")
  foreach(_src IN LISTS _sources)
    get_filename_component(_name "${_src}" NAME_WE)
    if(NOT EXISTS "${WORK_DIR}/${_name}.log")
      message(FATAL_ERROR "no ptxas output kept for ${_src} in ${WORK_DIR}: rebuild addernet_cuda_kernels "
                          "(delete its objects) so that its compile runs through the capturing launcher")
    endif()
    file(READ "${WORK_DIR}/${_name}.log" _out)
    string(APPEND _raw "==== ${_src}\n${_out}")
  endforeach()

  # One summary row per (kernel, architecture); ptxas prints the name, then the stack/spill
  # line, then the register line.
  string(REPLACE ";" "\\;" _escaped "${_raw}")
  string(REPLACE "\n" ";" _lines "${_escaped}")
  set(_rows "")
  set(_names "")
  set(_total_spill 0)
  set(_fn "")
  set(_arch "")
  set(_spill "0 0")
  foreach(_line IN LISTS _lines)
    if(_line MATCHES "Compiling entry function '([^']+)' for '([^']+)'")
      set(_fn "${CMAKE_MATCH_1}")
      set(_arch "${CMAKE_MATCH_2}")
      set(_spill "0 0")
    elseif(_line MATCHES "([0-9]+) bytes spill stores, ([0-9]+) bytes spill loads")
      set(_spill "${CMAKE_MATCH_1} ${CMAKE_MATCH_2}")
      math(EXPR _total_spill "${_total_spill} + ${CMAKE_MATCH_1} + ${CMAKE_MATCH_2}")
    elseif(_fn AND _line MATCHES "Used ([0-9]+) registers")
      set(_regs "${CMAKE_MATCH_1}")
      set(_smem 0)
      if(_line MATCHES "([0-9]+) bytes smem")
        set(_smem "${CMAKE_MATCH_1}")
      endif()
      string(REPLACE " " ";" _sp "${_spill}")
      list(GET _sp 0 _st)
      list(GET _sp 1 _ld)
      list(APPEND _rows "${_arch}|${_regs}|${_st}|${_ld}|${_smem}")
      list(APPEND _names "${_fn}")
      set(_fn "")
    endif()
  endforeach()

  # Kernel names demangled in one c++filt call, when there is one.
  set(_pretty "${_names}")
  find_program(_cxxfilt NAMES c++filt llvm-cxxfilt)
  if(_cxxfilt AND _names)
    string(REPLACE ";" "\n" _name_text "${_names}")
    file(WRITE "${WORK_DIR}/ptxas_names.txt" "${_name_text}\n")
    execute_process(COMMAND "${_cxxfilt}" INPUT_FILE "${WORK_DIR}/ptxas_names.txt"
                    OUTPUT_VARIABLE _demangled RESULT_VARIABLE _frc)
    if(_frc EQUAL 0)
      string(STRIP "${_demangled}" _demangled)
      # Drop the namespaces: the report is read by people comparing tile shapes.
      string(REGEX REPLACE "addernet::cuda::\\(anonymous namespace\\)::" "" _demangled
             "${_demangled}")
      string(REPLACE ";" "," _demangled "${_demangled}")
      string(REPLACE "\n" ";" _pretty "${_demangled}")
    endif()
  endif()

  set(_summary "arch    regs  spill_st  spill_ld  smem_B  kernel\n")
  list(LENGTH _rows _count)
  if(_count GREATER 0)
    math(EXPR _last "${_count} - 1")
    foreach(_i RANGE ${_last})
      list(GET _rows ${_i} _row)
      list(GET _pretty ${_i} _kernel)
      string(REPLACE "|" ";" _f "${_row}")
      list(GET _f 0 _a)
      list(GET _f 1 _r)
      list(GET _f 2 _s)
      list(GET _f 3 _l)
      list(GET _f 4 _m)
      foreach(_v _a _r _s _l _m)
        string(LENGTH "${${_v}}" _len)
        set(_width 8)
        if(_v STREQUAL "_r")
          set(_width 6)
        elseif(_v STREQUAL "_s" OR _v STREQUAL "_l")
          set(_width 10)
        endif()
        while(_len LESS _width)
          string(APPEND ${_v} " ")
          math(EXPR _len "${_len} + 1")
        endwhile()
      endforeach()
      string(APPEND _summary "${_a}${_r}${_s}${_l}${_m}${_kernel}\n")
    endforeach()
  endif()
  file(WRITE "${OUT}"
       "ptxas resource usage of the adder-convolution CUDA kernels\n"
       "kernels: ${_count}, total spill bytes (stores + loads): ${_total_spill}\n\n"
       "${_summary}\n"
       "---- raw ptxas output ----\n${_raw}")
  message(STATUS "ptxas report: ${_count} kernels, ${_total_spill} spill bytes -> ${OUT}")
  return()
endif()

# ---------------------------------------------------------------------------------------------
# Include mode.

get_filename_component(_addernet_root "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)

# An explicit architecture list wins. enable_language(CUDA) fills CMAKE_CUDA_ARCHITECTURES with
# the toolkit's default when nobody set it; that default keeps CMake's own help string, while a
# -D on the command line, CUDAARCHS or a plain variable of the project mark a choice.
get_property(_addernet_arch_help CACHE CMAKE_CUDA_ARCHITECTURES PROPERTY HELPSTRING)
if(DEFINED ADDERNET_CUDA_ARCHITECTURES)
  set(_addernet_cuda_archs "${ADDERNET_CUDA_ARCHITECTURES}")
elseif(CMAKE_CUDA_ARCHITECTURES AND (NOT _addernet_arch_help STREQUAL "CUDA architectures"
       OR NOT "$ENV{CUDAARCHS}" STREQUAL ""
       OR NOT "${CMAKE_CUDA_ARCHITECTURES}" STREQUAL "$CACHE{CMAKE_CUDA_ARCHITECTURES}"))
  set(_addernet_cuda_archs "${CMAKE_CUDA_ARCHITECTURES}")
else()
  set(_addernet_cuda_archs "80;90")
endif()
message(STATUS "addernet CUDA kernels: architectures ${_addernet_cuda_archs}")

find_package(CUDAToolkit REQUIRED)

include("${CMAKE_CURRENT_LIST_DIR}/sources.cmake")
addernet_sources(ADDERNET_CUDA_KERNEL_SOURCES cuda_kernels)
file(GLOB ADDERNET_CUDA_KERNEL_HEADERS CONFIGURE_DEPENDS
     "${_addernet_root}/csrc/kernels/cuda/*.cuh")
set(_addernet_cuda_opts -O3 -Xcompiler=-Wall,-Wextra)

add_library(addernet_cuda_kernels STATIC ${ADDERNET_CUDA_KERNEL_SOURCES})
set_target_properties(addernet_cuda_kernels PROPERTIES
  CUDA_ARCHITECTURES "${_addernet_cuda_archs}"
  CUDA_STANDARD 17
  CUDA_STANDARD_REQUIRED ON
  POSITION_INDEPENDENT_CODE ON)
target_include_directories(addernet_cuda_kernels PUBLIC "${_addernet_root}/csrc/kernels/cuda")
# ptxas's register/spill lines show in the build log, and the launcher keeps them for the report.
target_compile_options(addernet_cuda_kernels PRIVATE
  $<$<COMPILE_LANGUAGE:CUDA>:${_addernet_cuda_opts} -Xptxas=-v>)
set(_addernet_report_dir "${CMAKE_BINARY_DIR}/addernet_ptxas")
file(MAKE_DIRECTORY "${_addernet_report_dir}")
set_target_properties(addernet_cuda_kernels PROPERTIES CUDA_COMPILER_LAUNCHER
  "${CMAKE_COMMAND};-DCAPTURE_DIR=${_addernet_report_dir};-P;${CMAKE_CURRENT_LIST_FILE};--")
target_link_libraries(addernet_cuda_kernels PUBLIC CUDA::cudart)

add_executable(addernet_cuda_kernels_test "${_addernet_root}/csrc/tests/test_cuda_kernels.cu")
set_target_properties(addernet_cuda_kernels_test PROPERTIES
  CUDA_ARCHITECTURES "${_addernet_cuda_archs}"
  CUDA_STANDARD 17
  CUDA_STANDARD_REQUIRED ON)
target_compile_options(addernet_cuda_kernels_test PRIVATE
  $<$<COMPILE_LANGUAGE:CUDA>:${_addernet_cuda_opts}>)
target_link_libraries(addernet_cuda_kernels_test PRIVATE addernet_cuda_kernels)
enable_testing()
add_test(NAME adder_cuda_kernels COMMAND addernet_cuda_kernels_test)
# 77: no GPU here; CTest shows the test as skipped rather than failed.
set_tests_properties(adder_cuda_kernels PROPERTIES SKIP_RETURN_CODE 77)

# The report, from the logs the library's compile left (one per source, all architectures).
string(REPLACE ";" "|" _addernet_report_sources "${ADDERNET_CUDA_KERNEL_SOURCES}")
add_custom_command(
  OUTPUT "${CMAKE_BINARY_DIR}/ptxas_report.txt"
  COMMAND "${CMAKE_COMMAND}"
          "-DSOURCES=${_addernet_report_sources}"
          "-DOUT=${CMAKE_BINARY_DIR}/ptxas_report.txt"
          "-DWORK_DIR=${_addernet_report_dir}"
          -P "${CMAKE_CURRENT_LIST_FILE}"
  DEPENDS addernet_cuda_kernels "${CMAKE_CURRENT_LIST_FILE}"
  COMMENT "ptxas resource report of the CUDA kernels -> ptxas_report.txt"
  VERBATIM)
add_custom_target(addernet_ptxas_report ALL DEPENDS "${CMAKE_BINARY_DIR}/ptxas_report.txt")
