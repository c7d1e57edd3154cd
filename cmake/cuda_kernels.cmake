# The raw CUDA kernels (csrc/kernels/cuda, no torch) for the nvcc compile check:
#   addernet_cuda_kernels       static library, sm_80 + sm_90 unless CMAKE_CUDA_ARCHITECTURES is
#                               given (or ADDERNET_CUDA_ARCHITECTURES)
#   addernet_cuda_kernels_test  GPU unit test (csrc/tests/test_cuda_kernels.cu), CTest name
#                               adder_cuda_kernels; it reports "skipped" where there is no GPU
#   addernet_ptxas_report       writes ${CMAKE_BINARY_DIR}/ptxas_report.txt: registers, spills
#                               and shared memory of every kernel for every architecture
# Include it from a project with the CUDA language enabled.
#
# The same file is also the script that writes the report (cmake -P, below): the compile that
# captures ptxas's output runs apart from the library's, so it works with any generator.

if(CMAKE_SCRIPT_MODE_FILE)
  cmake_policy(VERSION 3.18)
  # Script mode. In: NVCC, FLAGS ('|'-separated), SOURCES ('|'-separated), OUT, WORK_DIR.
  string(REPLACE "|" ";" _flags "${FLAGS}")
  string(REPLACE "|" ";" _sources "${SOURCES}")
  set(_raw "")
  foreach(_src IN LISTS _sources)
    get_filename_component(_name "${_src}" NAME_WE)
    execute_process(
      COMMAND "${NVCC}" ${_flags} -Xptxas=-v -c "${_src}" -o "${WORK_DIR}/${_name}.ptxas.o"
      RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
    string(APPEND _raw "==== ${_src}\n${_out}")
    if(NOT _rc EQUAL 0)
      file(WRITE "${OUT}" "nvcc failed (${_rc}) on ${_src}\n${_raw}")
      message(FATAL_ERROR "nvcc failed on ${_src}; see ${OUT}")
    endif()
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
# ptxas's register/spill lines also show in the build log of the library itself.
target_compile_options(addernet_cuda_kernels PRIVATE
  $<$<COMPILE_LANGUAGE:CUDA>:${_addernet_cuda_opts} -Xptxas=-v>)
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

# The report's compile: same sources and optimisation, one -gencode per architecture.
set(_addernet_report_flags -std=c++17 -O3 "-I${_addernet_root}/csrc/kernels/cuda")
foreach(_arch IN LISTS _addernet_cuda_archs)
  string(REGEX REPLACE "-(real|virtual)$" "" _num "${_arch}")
  list(APPEND _addernet_report_flags "-gencode=arch=compute_${_num},code=sm_${_num}")
endforeach()
string(REPLACE ";" "|" _addernet_report_flags "${_addernet_report_flags}")
string(REPLACE ";" "|" _addernet_report_sources "${ADDERNET_CUDA_KERNEL_SOURCES}")
set(_addernet_report_dir "${CMAKE_BINARY_DIR}/addernet_ptxas")
add_custom_command(
  OUTPUT "${CMAKE_BINARY_DIR}/ptxas_report.txt"
  COMMAND "${CMAKE_COMMAND}" -E make_directory "${_addernet_report_dir}"
  COMMAND "${CMAKE_COMMAND}"
          "-DNVCC=${CMAKE_CUDA_COMPILER}"
          "-DFLAGS=${_addernet_report_flags}"
          "-DSOURCES=${_addernet_report_sources}"
          "-DOUT=${CMAKE_BINARY_DIR}/ptxas_report.txt"
          "-DWORK_DIR=${_addernet_report_dir}"
          -P "${CMAKE_CURRENT_LIST_FILE}"
  DEPENDS ${ADDERNET_CUDA_KERNEL_SOURCES} ${ADDERNET_CUDA_KERNEL_HEADERS}
          "${CMAKE_CURRENT_LIST_FILE}"
  COMMENT "ptxas resource report of the CUDA kernels -> ptxas_report.txt"
  VERBATIM)
add_custom_target(addernet_ptxas_report ALL DEPENDS "${CMAKE_BINARY_DIR}/ptxas_report.txt")
